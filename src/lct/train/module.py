"""ConsistencyModule: orchestration only; every formula lives in lct.core (STYLE §6)."""
from __future__ import annotations

import copy
import logging
import time
from functools import lru_cache

import lightning as L
import torch
from torch import nn

from lct import core
from lct.checkpoint import ema_key, selected_ema

log = logging.getLogger(__name__)


class ConsistencyModule(L.LightningModule):
    """Student (preconditioning + backbone), stop-grad or EMA target, evaluation EMAs, the composite loss."""

    def __init__(self, backbone: nn.Module, optimizer, method: dict, ema: dict, target: dict,
                 total_steps: int, latent_shape, seed: int = 0, log_every: int = 25, max_nonfinite: int = 20,
                 run_config: dict | None = None):
        super().__init__()
        self.method, self.ema_cfg, self.target_cfg = method, ema, target
        sig = method["sigma"]
        self.student = core.ConsistencyFunction(backbone, sig["data"], sig["min"], sig["max"])
        # Evaluation EMAs (paper: 0.99993) are parameters-only copies, excluded from the optimizer.
        self.emas = nn.ModuleDict({ema_key(d): self._frozen_copy() for d in ema["decays"]})
        self.target_net = self._frozen_copy() if target["kind"] == "ema" else None
        self.optimizer_factory, self.total_steps, self.seed = optimizer, int(total_steps), int(seed)
        self.log_every, self.max_nonfinite, self.run_config = log_every, max_nonfinite, run_config or {}
        dim = int(torch.tensor(list(latent_shape)).prod())          # D = C*H*W (iCT's c = 0.00054 sqrt(D))
        c = dict(method["c"])
        self.c_schedule = core.make_c_schedule(c.pop("schedule"), dim, **c)
        self.nonfinite_run = self.nonfinite_total = 0
        self._gen_idx = torch.Generator().manual_seed(self.seed)   # same on every rank: global draws
        self._gen_noise: torch.Generator | None = None
        self._pending_noise_state: torch.Tensor | None = None   # restored once the module is on its device
        self._skipped, self._t_last, self._step = False, None, 0

    def _frozen_copy(self) -> nn.Module:
        return copy.deepcopy(self.student).requires_grad_(False)

    # ---------------------------------------------------------------- schedules (pure functions of step)

    @lru_cache(maxsize=16)
    def grid(self, n_scales: int):
        """(sigmas float64 CPU, index probabilities) of the N-point grid."""
        sig, noise = self.method["sigma"], self.method["noise"]
        sigmas = core.karras_sigmas(n_scales, sig["min"], sig["max"], sig["rho"])
        if noise["sampler"] == "uniform":
            return sigmas, core.uniform_index_probs(sigmas)
        return sigmas, core.lognormal_index_probs(sigmas, noise["p_mean"], noise["p_std"])

    def n_scales(self, step: int) -> int:
        cur = self.method["curriculum"]
        return core.num_scales(step, self.total_steps, cur["s0"], cur["s1"])

    # ---------------------------------------------------------------- the step

    def _noise_generator(self) -> torch.Generator:
        if self._gen_noise is None or self._gen_noise.device != self.device:
            self._gen_noise = torch.Generator(self.device).manual_seed(self.seed + 1)
        return self._gen_noise

    def _couple(self, x0: torch.Tensor, noise_g: torch.Tensor, sl: slice) -> torch.Tensor:
        """This rank's noise, OT-coupled to x0 per rank (paper) or over the global batch (option)."""
        cp = self.method["coupling"]
        if cp["method"] == "none":
            return noise_g[sl]
        if cp.get("scope", "local") == "local" or self.trainer.world_size == 1:
            return core.ot_pair(x0, noise_g[sl], cp["method"], cp.get("reg", 0.05), self._gen_idx)
        x_g = self.all_gather(x0).flatten(0, 1)                                     # (B, C, H, W)
        perm = core.ot_permutation(core.sq_euclidean_cost(x_g, noise_g), cp["method"], cp.get("reg", 0.05),
                                   self._gen_idx)
        return noise_g[torch.as_tensor(perm, device=noise_g.device)][sl]

    def training_step(self, x0: torch.Tensor, batch_idx: int):
        m, world, rank = self.method, self.trainer.world_size, self.global_rank
        self._step = self.global_step
        n = self.n_scales(self._step)
        sigmas, probs = self.grid(n)
        b = x0.shape[0]
        sl = slice(rank * b, (rank + 1) * b)
        # Draw the *global* batch's indices and noise on every rank, keep this rank's slice: a W-process
        # step then equals the single-process step on the same global batch.
        idx_g = core.sample_indices(probs, b * world, self._gen_idx)
        noise_g = torch.randn((b * world, *x0.shape[1:]), generator=self._noise_generator(), device=self.device)
        noise, idx = self._couple(x0, noise_g, sl), idx_g[sl]
        diff = m["diffusion"]
        tail = core.diffusion_mask(idx_g, n, diff["ratio"]).sum().item() / world
        c = self.c_schedule(n)
        try:
            terms = core.lct_loss(
                self.student, self.target_net or self.student, x0, noise,
                sigmas[idx].to(x0), sigmas[idx + 1].to(x0), idx.to(self.device), n, m["metric"], c,
                diff["weight"], diff["ratio"], m["sigma"]["data"], diffusion_denominator=tail)
            bad = not bool(torch.isfinite(terms.loss))
        except core.NonFiniteError as err:
            terms, bad = None, True
            log.warning("step %d: %s", self.global_step, err)
        if self._any_rank(bad):
            return self._skip_step()
        self.nonfinite_run, self._skipped = 0, False
        self._log_step(terms, n, c, b)
        if isinstance(self.c_schedule, core.OnlineC):
            self.c_schedule.update(terms.residual)
        return terms.loss

    def _any_rank(self, flag: bool) -> bool:
        if self.trainer.world_size == 1:
            return flag
        t = torch.tensor(float(flag), device=self.device)
        return bool(self.trainer.strategy.reduce(t, reduce_op="max") > 0)

    def _skip_step(self):
        """Non-finite loss: skip, count, log; stop with a checkpoint after max_nonfinite in a row."""
        self.nonfinite_run += 1
        self.nonfinite_total += 1
        self._skipped = True
        self.log("train/nonfinite_total", float(self.nonfinite_total), on_step=True, sync_dist=False)
        if self.nonfinite_run >= self.max_nonfinite:
            path = f"{self.trainer.default_root_dir}/checkpoints/nonfinite-stop.ckpt"
            self.trainer.save_checkpoint(path)
            raise RuntimeError(f"{self.nonfinite_run} non-finite losses in a row at step {self.global_step}; "
                               f"stopped. Last good state saved to {path} (lower the lr or check the data).")
        return None

    def _log_step(self, terms, n: int, c: float, b: int) -> None:
        self.log("train/loss", terms.loss.detach(), prog_bar=True)
        if self.global_step % self.log_every:
            return
        stats = core.residual_stats(terms.residual)
        now = time.perf_counter()
        sps = (self.log_every * b * self.trainer.world_size / (now - self._t_last)) if self._t_last else 0.0
        self._t_last = now
        self.log_dict({
            "train/consistency": terms.consistency, "train/diffusion": terms.diffusion,
            "train/diffusion_fraction": terms.diffusion_fraction, "train/N": float(n), "train/c": float(c),
            "train/lambda_mean": terms.weight.mean(), "train/td_std": stats["std"],
            "train/td_kurtosis": stats["kurtosis"], "train/td_outer_fence": stats["outer_fence_frac"],
            "train/samples_per_s": sps, "train/lr": self.trainer.optimizers[0].param_groups[0]["lr"],
        })

    def on_before_optimizer_step(self, optimizer) -> None:
        grads = [p.grad for p in self.student.parameters() if p.grad is not None]
        if grads and self.global_step % self.log_every == 0:
            self.log("train/grad_norm", torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])))

    def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None) -> None:
        # Averages are updated here, inside the step, so a checkpoint written by a callback at the end
        # of this batch already holds them (on_train_batch_end runs callbacks before the module).
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        if not self._skipped:
            self._update_averages(self._step)

    def _update_averages(self, step: int) -> None:
        for decay in self.ema_cfg["decays"]:
            core.ema_update(self.emas[ema_key(decay)].parameters(), self.student.parameters(),
                            core.ema_decay(step, decay, self.ema_cfg.get("warmup", False)))
        if self.target_net is not None:
            core.ema_update(self.target_net.parameters(), self.student.parameters(), self.target_cfg["decay"])

    def configure_optimizers(self):
        return self.optimizer_factory(params=[p for p in self.student.parameters() if p.requires_grad])

    # ---------------------------------------------------------------- sampling and checkpoints

    @torch.no_grad()
    def generate(self, noise: torch.Tensor, sigmas, ema: bool | float = True, generator=None) -> torch.Tensor:
        """x0 latents from `noise` (B,C,H,W) through the sigmas (1 NFE: [sigma_max]) with an EMA or the student."""
        key = selected_ema(ema, self.ema_cfg["decays"])
        net = self.student if key is None else self.emas[key]
        was_training = net.training
        net.eval()
        try:
            return core.multistep_sample(net, noise, sigmas, self.method["sigma"]["min"], generator)
        finally:
            net.train(was_training)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["lct"] = {
            "config": self.run_config, "nonfinite_total": self.nonfinite_total,
            "gen_idx": self._gen_idx.get_state(),
            "gen_noise": self._noise_generator().get_state(), "torch_rng": torch.get_rng_state(),
            "c_schedule": self.c_schedule.state_dict() if hasattr(self.c_schedule, "state_dict") else None,
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint.get("lct", {})
        self.nonfinite_total = state.get("nonfinite_total", 0)
        if "gen_idx" in state:
            self._gen_idx.set_state(state["gen_idx"])
            self._pending_noise_state = state["gen_noise"]
            torch.set_rng_state(state["torch_rng"])
        if state.get("c_schedule") is not None:
            self.c_schedule.load_state_dict(state["c_schedule"])

    def on_train_start(self) -> None:
        if self._pending_noise_state is not None:   # the device generator exists only on its device
            self._noise_generator().set_state(self._pending_noise_state.to("cpu"))
            self._pending_noise_state = None
