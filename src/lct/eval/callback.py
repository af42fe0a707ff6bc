"""In-loop evaluation: every k steps and at the end, FID/KID/precision/recall at each NFE (1 and 2 for a
consistency run, 1 and 35 for EDM) on the EMA model.

A fixed-seed sample set is generated with `pl_module.generate(noise, sigmas, ema=True)`, decoded with
`trainer.datamodule.codec.decode`, and scored against reference statistics of decoded real latents
(computed once on rank 0, cached under the run's `eval/` folder or `reference_path`). Every DDP rank
generates and scores its own slice of the seeds: torchmetrics gathers on compute, which all ranks call.
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import torch
from torch import nn

from lct.core.sampling import DEFAULT_NFE, nfe_sigmas
from lct.errors import LctError

from .grid import image_grid, save_png, side_by_side
from .metrics import GenerativeMetrics
from .reference import decoded_batches, extract_features, load_or_compute_reference, make_provenance
from .sampling import rank_seeds, seeded_batches

log = logging.getLogger(__name__)


def preempted(pl_module) -> bool:
    """A run stopped by a signal skips the end-of-training passes: its time goes to the checkpoint (lct.train)."""
    return getattr(pl_module, "preempted_step", None) is not None


class PeriodicSamplingCallback(L.Callback):
    """Base of the in-loop sampling callbacks: `run(trainer, pl_module)` every `every_n_steps` and at train
    end, with the run's noise levels and sampler kind (read from the module at fit start: the module's
    `noise_levels`, from the run's method.sigma or its checkpoint; there is no default).

    nfe None: the run's kind's default (lct.core.DEFAULT_NFE: 1 and 2 for consistency, 1 and 35 Heun
    evaluations for an EDM run); an NFE the run's sampler cannot do stops the run at fit start."""

    def __init__(
        self,
        every_n_steps: int,
        sigma_mid: float | None,
        sigma_mid_index: int | None,
        seed: int,
        nfe: tuple[int, ...] | None,
        at_train_end: bool,
    ):
        super().__init__()
        self.every_n_steps, self.seed, self.at_train_end = int(every_n_steps), int(seed), bool(at_train_end)
        # None: from the run's noise levels at fit start (its sigma_mid, or this index on its grid)
        self._sigma_mid, self.sigma_mid_index = sigma_mid, sigma_mid_index
        self._nfe = None if nfe is None else tuple(int(n) for n in nfe)
        self.noise = None  # the run's, at fit start
        self._last_step = -1

    def _use_run(self, pl_module: L.LightningModule) -> None:
        """The run's noise levels and sampler kind; an NFE its sampler cannot do fails now, not at the first pass."""
        noise = getattr(pl_module, "noise_levels", None)
        if noise is None:
            raise LctError(
                f"{type(self).__name__} samples at the run's noise levels, but {type(pl_module).__name__} has no "
                "`noise_levels` (lct.core.NoiseLevels of the run's method.sigma); give the module its run's noise "
                "levels (lct.train's ConsistencyModule has them) or drop the callback"
            )
        self._use_noise_levels(noise, getattr(pl_module, "kind", "consistency"))
        for n in self.nfe:
            self.sigmas(n)

    def _use_noise_levels(self, noise, kind: str = "consistency") -> None:
        self.noise, self.kind = noise, kind
        self.nfe = self._nfe or DEFAULT_NFE[kind]
        if self._sigma_mid is not None:
            self.sigma_mid = float(self._sigma_mid)
        elif self.sigma_mid_index is not None:
            self.sigma_mid = noise.grid_sigma(self.sigma_mid_index, noise.mid_grid)
        else:
            self.sigma_mid = noise.sigma_mid

    def sigmas(self, nfe: int) -> list[float]:
        """The sampling sigmas of `nfe` evaluations for this run's kind (lct.core.nfe_sigmas)."""
        return nfe_sigmas(self.kind, self.noise, nfe, self.sigma_mid)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if step > 0 and step % self.every_n_steps == 0 and step != self._last_step:
            self.run(trainer, pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        if self.at_train_end and trainer.global_step != self._last_step and not preempted(pl_module):
            self.run(trainer, pl_module)

    def run(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        raise NotImplementedError

    @staticmethod
    def log_results(trainer: L.Trainer, results: dict[str, float]) -> None:
        """Hand `results` to every logger at this step and to callback_metrics (which ModelCheckpoint monitors)."""
        # Straight to the loggers: pl_module.log would drop a step that is not a multiple of
        # log_every_n_steps, and is not allowed in on_train_end.
        trainer.callback_metrics.update({k: torch.tensor(v) for k, v in results.items()})
        for logger in trainer.loggers:
            logger.log_metrics(results, step=trainer.global_step)


class SampleGridCallback(PeriodicSamplingCallback):
    """Every k steps and at the end: a fixed-seed grid of EMA samples at each NFE, decoded, saved as PNG
    under <run>/samples/ (and logged to wandb / tensorboard). Cheap: no Inception features.

    nfe None: the run's kind's default (lct.core.DEFAULT_NFE: 1 and 2 for consistency, 1 and 35 Heun
    evaluations for an EDM run); an NFE the run's sampler cannot do stops the run at fit start."""

    def __init__(
        self,
        every_n_steps: int = 500,
        grid_size: int = 64,
        sigma_mid: float | None = None,
        sigma_mid_index: int | None = None,
        seed: int = 0,
        nfe: tuple[int, ...] | None = None,
        at_train_end: bool = True,
    ):
        if every_n_steps < 1:
            raise ValueError(f"need every_n_steps >= 1, got {every_n_steps}")
        super().__init__(every_n_steps, sigma_mid, sigma_mid_index, seed, nfe, at_train_end)
        self.grid_size = int(grid_size)
        self._dir: Path | None = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._use_run(pl_module)
        self._dir = None
        self._run_dir(trainer)

    @torch.no_grad()
    def run(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Save the grid (rank 0; a run without a codec, e.g. synthetic latents, has nothing to show)."""
        self._last_step = trainer.global_step
        codec = getattr(trainer.datamodule, "codec", None)
        if codec is None or not trainer.is_global_zero:
            return
        if hasattr(codec, "to"):
            codec.to(pl_module.device)
        shape = self._latent_shape(trainer, pl_module)
        sample_fn = lambda noise, sigmas: pl_module.generate(noise, sigmas, ema=True)  # noqa: E731
        seeds = list(range(self.seed, self.seed + self.grid_size))
        grids = [
            image_grid(
                torch.cat(
                    [
                        img.cpu()
                        for _, _, img in seeded_batches(
                            sample_fn, seeds, shape, self.sigmas(n), 256, codec.decode, pl_module.device
                        )
                    ]
                )
            )
            for n in self.nfe
        ]
        self._save_grid(trainer, side_by_side(grids))

    def _run_dir(self, trainer: L.Trainer) -> Path:
        # The run directory (lct.train sets default_root_dir to Hydra's output dir), not a logger's
        # versioned subfolder: samples/ and eval/ sit beside checkpoints/.
        if self._dir is None:
            self._dir = Path(trainer.default_root_dir)
        return self._dir

    def _latent_shape(self, trainer, pl_module) -> tuple[int, ...]:
        """(C, H, W) of the latents: from the module if it says, else from one training batch's sample."""
        shape = getattr(pl_module, "latent_shape", None) or getattr(trainer.datamodule, "latent_shape", None)
        if shape is None:
            from .reference import batch_tensor

            shape = batch_tensor(next(iter(trainer.datamodule.train_dataloader()))).shape[1:]
        return tuple(int(s) for s in shape)

    def _save_grid(self, trainer: L.Trainer, grid) -> None:
        path = save_png(grid, self._run_dir(trainer) / "samples" / f"step{trainer.global_step:07d}.png")
        caption = f"{'|'.join(map(str, self.nfe))} NFE, sigma_mid={self.sigma_mid:.4f}, step {trainer.global_step}"
        for logger in trainer.loggers:
            try:
                if hasattr(logger, "log_image"):  # wandb
                    logger.log_image("val/samples", [grid], step=trainer.global_step, caption=[caption])
                elif hasattr(getattr(logger, "experiment", None), "add_image"):  # tensorboard
                    logger.experiment.add_image("val/samples", grid, trainer.global_step, dataformats="HWC")
            except Exception as err:  # a logger's image API must never kill the training run
                log.warning("could not log the sample grid to %s: %s", type(logger).__name__, err)
        log.info("sample grid saved to %s", path)


class SampleEvalCallback(SampleGridCallback):
    """Sample, score and log `val/{fid,kid,precision,recall}_{n}nfe` plus a 1|2-NFE sample grid PNG."""

    def __init__(
        self,
        every_n_steps: int = 1000,
        num_samples: int = 500,
        batch_size: int = 50,
        sigma_mid: float | None = None,
        sigma_mid_index: int | None = None,
        seed: int = 0,
        nfe: tuple[int, ...] | None = None,
        num_reference: int = 1000,
        reference_path: str | None = None,
        on_stale: str = "recompute",
        grid_size: int = 36,
        kid_subset_size: int = 1000,
        inception_path: str | None = None,
        resize_mode: str = "tf1_bilinear",
        at_train_end: bool = True,
        extractor: nn.Module | None = None,
    ):
        super().__init__(every_n_steps, grid_size, sigma_mid, sigma_mid_index, seed, nfe, at_train_end)
        if num_samples < 2:
            raise ValueError(f"need num_samples >= 2, got {num_samples}")
        self.num_samples, self.batch_size = int(num_samples), int(batch_size)
        self.num_reference, self.reference_path, self.on_stale = int(num_reference), reference_path, on_stale
        self.kid_subset_size = int(kid_subset_size)
        self.inception_path, self.resize_mode, self._extractor = inception_path, resize_mode, extractor
        self.metrics: GenerativeMetrics | None = None

    # -- setup ---------------------------------------------------------------------------------

    def _codec(self, trainer: L.Trainer):
        codec = getattr(trainer.datamodule, "codec", None)
        if codec is None:
            raise RuntimeError("SampleEvalCallback needs trainer.datamodule.codec (a LatentDataModule after setup())")
        return codec

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._use_run(pl_module)
        self.metrics = GenerativeMetrics(
            self._extractor,
            kid_subset_size=self.kid_subset_size,
            seed=self.seed,
            inception_path=self.inception_path,
            resize_mode=self.resize_mode,
        ).to(pl_module.device)
        self._dir, codec = None, self._codec(trainer)
        run_dir = self._run_dir(trainer)
        if hasattr(codec, "to"):
            codec.to(pl_module.device)
        path = Path(self.reference_path) if self.reference_path else run_dir / "eval" / "reference.pt"
        dm = trainer.datamodule
        dataset = f"{type(dm).__name__}:{getattr(dm, 'builtin', None) or getattr(dm, 'root', None)}"
        expected = make_provenance(dataset, self.num_reference, self.metrics.extractor, "decoded_latents")

        def compute() -> torch.Tensor:
            batches = decoded_batches(dm.train_dataloader(), codec, pl_module.device)
            return extract_features(self.metrics.extractor, batches, self.num_reference, device=pl_module.device)

        # Rank 0 computes (or validates) the cache; the others wait, then read it.
        ref = load_or_compute_reference(path, expected, compute, self.on_stale) if trainer.is_global_zero else None
        trainer.strategy.barrier("lct_eval_reference")
        ref = ref or load_or_compute_reference(path, expected, compute, "error")
        self.metrics.set_reference(ref, trainer.global_rank, trainer.world_size)

    # -- work ----------------------------------------------------------------------------------

    def run(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Score and log (the base class's hooks call this every k steps and at train end)."""
        self.log_results(trainer, self.evaluate(trainer, pl_module))

    @torch.no_grad()
    def evaluate(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, float]:
        """Generate this rank's seeds at each NFE, score, save the grid; returns the metrics (all ranks)."""
        self._last_step = trainer.global_step
        codec, shape = self._codec(trainer), self._latent_shape(trainer, pl_module)
        seeds = rank_seeds(self.seed, self.num_samples, trainer.global_rank, trainer.world_size)
        sample_fn = lambda noise, sigmas: pl_module.generate(noise, sigmas, ema=True)  # noqa: E731
        results, grids = {}, []
        for nfe in self.nfe:
            sigmas = self.sigmas(nfe)
            self.metrics.reset_fake()
            shown = []
            for _, _, images in seeded_batches(
                sample_fn, seeds, shape, sigmas, self.batch_size, codec.decode, pl_module.device
            ):
                self.metrics.update(images)
                shown.append(images[: self.grid_size - sum(len(s) for s in shown)].cpu())
            scores = self.metrics.compute()
            for key in ("fid", "kid", "precision", "recall"):
                results[f"val/{key}_{nfe}nfe"] = scores[key]
            grids.append(image_grid(torch.cat(shown)))
        if trainer.is_global_zero:
            self._save_grid(trainer, side_by_side(grids))
        return results
