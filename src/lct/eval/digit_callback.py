"""In-loop digit metrics for the built-in MNIST: every k steps and at the end,
`digits/{fid,legible_balanced,legible,coverage}_{n}nfe` on fixed-seed EMA samples, scored by the shipped digit
classifier (lct.eval.digits; legibility is shown only beside coverage and the balanced score that needs both).

Seconds per pass on a CPU, so FID-vs-step curves come with every run; Inception FID (callbacks=eval,
lct.evaluate) stays the reported standard. Rank 0 samples and scores; the numbers are broadcast so every
rank's callback_metrics agree.
"""

from __future__ import annotations

import logging

import lightning as L
import torch

from lct.core.noise_levels import NoiseLevels
from lct.core.sampling import nfe_sigmas
from lct.errors import LctError

from .callback import PeriodicSamplingCallback
from .digits import DigitScorer
from .sampling import seeded_batches

log = logging.getLogger(__name__)
# Logged per NFE, in the order the log line prints them (legibility always beside coverage).
KEYS = ("fid", "legible_balanced", "legible", "coverage")


def sample_images(
    pl_module: L.LightningModule,
    decode,
    seeds: list[int],
    latent_shape,
    nfe: int,
    sigma_mid: float,
    batch_size: int,
    noise: NoiseLevels,
    kind: str,
):
    """Decoded EMA samples at `nfe` NFE (consistency 1: [sigma_max], 2: [sigma_max, sigma_mid]; diffusion: Heun
    with 2 steps - 1 = nfe), one batch at a time."""
    sample_fn = lambda noise, sigmas: pl_module.generate(noise, sigmas, ema=True)  # noqa: E731
    for _, _, images in seeded_batches(
        sample_fn, seeds, latent_shape, nfe_sigmas(kind, noise, nfe, sigma_mid), batch_size, decode, pl_module.device
    ):
        yield images


class DigitMetricCallback(PeriodicSamplingCallback):
    """Logs the digit FID, balanced legibility, legibility and coverage of `num_samples` EMA samples at each NFE
    (data=mnist only).

    nfe None: the run's kind's default (lct.core.DEFAULT_NFE: 1 and 2 for consistency, 1 and 35 Heun
    evaluations for an EDM run); the keys name the NFE actually spent."""

    def __init__(
        self,
        every_n_steps: int = 500,
        num_samples: int = 256,
        batch_size: int = 256,
        nfe: tuple[int, ...] | None = None,
        sigma_mid: float | None = None,
        sigma_mid_index: int | None = None,
        seed: int = 0,
        classifier_path: str | None = None,
        at_train_end: bool = True,
    ):
        if every_n_steps < 1 or num_samples < 2:
            raise LctError(
                f"callbacks.digits needs every_n_steps >= 1 and num_samples >= 2, got {every_n_steps} "
                f"and {num_samples}; fix them in conf/callbacks/default.yaml or on the command line"
            )
        super().__init__(every_n_steps, sigma_mid, sigma_mid_index, seed, nfe, at_train_end)
        self.num_samples, self.batch_size = int(num_samples), int(batch_size)
        self.classifier_path = classifier_path
        self.scorer: DigitScorer | None = None
        self._active = False

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._use_run(pl_module)
        builtin = getattr(trainer.datamodule, "builtin", None)
        self._active = builtin == "mnist"
        if not self._active:
            log.info(
                "digit metrics off: they read the built-in MNIST's images (data=mnist), this run's data is %s",
                builtin or type(trainer.datamodule).__name__,
            )
            return
        self.scorer = DigitScorer(self.classifier_path, pl_module.device) if trainer.is_global_zero else None

    @torch.no_grad()
    def evaluate(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, float]:
        """Sample, decode and score at each NFE (rank 0)."""
        codec = trainer.datamodule.codec
        codec.to(pl_module.device)
        seeds = list(range(self.seed, self.seed + self.num_samples))
        results = {}
        for nfe in self.nfe:
            scores = self.scorer.score(
                sample_images(
                    pl_module,
                    codec.decode,
                    seeds,
                    codec.latent_shape,
                    nfe,
                    self.sigma_mid,
                    self.batch_size,
                    self.noise,
                    self.kind,
                )
            )
            for key in KEYS:
                results[f"digits/{key}_{nfe}nfe"] = scores[key]
        return results

    def run(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._active:
            return
        self._last_step = trainer.global_step
        results = self.evaluate(trainer, pl_module) if trainer.is_global_zero else None
        results = trainer.strategy.broadcast(results, src=0)
        if trainer.is_global_zero:
            log.info(
                "step %d, digit metrics of %d EMA samples: %s",
                trainer.global_step,
                self.num_samples,
                "; ".join(
                    "{} NFE FID {:.1f}, balanced legible {:.0%} (legible {:.0%} at coverage {:.2f})".format(
                        n, *(results[f"digits/{key}_{n}nfe"] for key in KEYS)
                    )
                    for n in self.nfe
                ),
            )
        self.log_results(trainer, results)  # ModelCheckpoint may monitor digits/fid_1nfe
