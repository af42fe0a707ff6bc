"""RunRecord: the callback that writes `<run dir>/record.json` (lct.io.records, docs/records.md) and hands every
logger the run's config as hyperparameters."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
from lightning.pytorch import Callback
from omegaconf import DictConfig, OmegaConf

from lct.errors import LctError
from lct.io import records
from lct.train.loggers import hydra_meta, hyperparameters

log = logging.getLogger(__name__)

MAX_LOSS_POINTS = 200  # train/loss points kept in the record's curves: enough to plot, small enough to copy
# callback_metrics keys that are not in-loop evaluations: the training step's own logs, lct's bookkeeping.
NOT_METRICS = ("train/", "lct/")


def resolved_config(cfg: DictConfig) -> dict:
    """The run's config with every interpolation resolved, without a composed `hydra` node."""
    keys = [k for k in cfg if k != "hydra"]
    return OmegaConf.to_container(OmegaConf.masked_copy(cfg, keys), resolve=True)


def one_line(error: BaseException, limit: int = 1000) -> str:
    """`Type: message` on one line (the CLIs print an LctError the same way), cut at `limit` characters (a
    rank's error arrives with its whole traceback in the message)."""
    text = " ".join(f"{type(error).__name__}: {error}".split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class RunRecord(Callback):
    """Writes the run record at train start (status running), after each in-loop evaluation (the steps of
    every callback with `every_n_steps`, and checkpoint steps) and at the end; rank 0 only."""

    def __init__(self, cfg: DictConfig):
        # Resolved now, in the launching process: ranks that ddp_spawn starts have no Hydra runtime to resolve with.
        self.config, self.meta = resolved_config(cfg), hydra_meta(cfg, cfg.paths.output_dir)
        self.run_dir = Path(cfg.paths.output_dir)
        self.record: dict | None = None
        self._seen: dict[str, object] = {}  # the metric tensors already recorded: a new value is a new object
        self._t0 = time.monotonic()
        self._wall0, self._step0 = 0.0, 0

    # ---------------------------------------------------------------- hooks

    def on_train_start(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero:
            return
        record = self._start(trainer)
        for logger in trainer.loggers:
            logger.log_hyperparams(hyperparameters(record["config"], self.meta))
        self._write(trainer, pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not trainer.is_global_zero or self.record is None:
            return
        step = trainer.global_step
        if step % max(1, (trainer.max_steps or 0) // MAX_LOSS_POINTS) == 0:
            self._sample_loss(trainer)
        if any(step > 0 and step % n == 0 for n in self._intervals(trainer)):
            self._write(trainer, pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        if trainer.is_global_zero:
            self._write(trainer, pl_module, status="preempted" if self._preempted(trainer, pl_module) else "finished")

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if not trainer.is_global_zero:
            return
        if getattr(pl_module, "nonfinite_stop_path", None):
            status = "stopped_nonfinite"
        elif self._preempted(trainer, pl_module):
            status = "preempted"
        else:
            status = "failed"
        try:
            self._write(trainer, pl_module, status=status, error=one_line(exception))
        except Exception as err:  # the run's own error is what the user must see, not the record's
            log.warning("could not write the run record after %s: %s", type(exception).__name__, err)

    @staticmethod
    def _preempted(trainer, pl_module) -> bool:
        """A stop signal ended the run (lct.train.preemption sets the module's preempted_step)."""
        return (
            getattr(pl_module, "preempted_step", None) is not None or "lct/preempted_step" in trainer.callback_metrics
        )

    # ---------------------------------------------------------------- the record

    def _start(self, trainer) -> dict:
        """A fresh record, carrying over a resumed run's earlier curves, grids, evaluations and time."""
        record = records.new_record(self.run_dir, self.config.get("experiment_name"))
        record.update(
            choices=self.meta["choices"],
            overrides=self.meta["overrides"],
            seed=self.config.get("seed"),
            config=self.config,
            host=records.host_info(torch.get_num_threads(), self._gpu(trainer)),
        )
        self._step0, self._t0 = trainer.global_step, time.monotonic()
        earlier = self._earlier_record()
        if earlier is not None and self._step0 > 0:  # a resumed attempt: its history up to the resumed step
            record["started"] = earlier["started"] or record["started"]
            record["curves"] = {k: [p for p in v if p[0] <= self._step0] for k, v in (earlier["curves"] or {}).items()}
            record["sample_grids"] = [p for p in earlier["sample_grids"] or [] if Path(p).is_file()]
            if isinstance(earlier["metrics"], dict):
                record["metrics"] = {
                    part: {k: v for k, v in (earlier["metrics"].get(part) or {}).items() if v["step"] <= self._step0}
                    for part in ("last", "best")
                }
            self._wall0 = float(earlier["wall_seconds"] or 0.0)
        self.record = record
        return record

    def _earlier_record(self) -> dict | None:
        if not (self.run_dir / records.RECORD_NAME).is_file():
            return None
        try:
            return records.load_record(self.run_dir)
        except LctError as err:
            log.warning("starting a new run record: %s", err)
            return None

    @staticmethod
    def _gpu(trainer) -> str | None:
        device = trainer.strategy.root_device
        return torch.cuda.get_device_name(device) if device.type == "cuda" else None

    @staticmethod
    def _intervals(trainer) -> list[int]:
        """The steps at which in-loop evaluations and periodic checkpoints run."""
        steps = [getattr(cb, "every_n_steps", None) for cb in trainer.callbacks]
        steps += [getattr(cb, "_every_n_train_steps", None) for cb in trainer.callbacks]
        return [int(n) for n in steps if isinstance(n, int) and n > 0]

    def _sample_loss(self, trainer) -> None:
        loss = trainer.callback_metrics.get("train/loss")
        if loss is not None:
            self.record["curves"].setdefault("train/loss", []).append([trainer.global_step, float(loss)])

    def _collect(self, trainer) -> None:
        """Every in-loop metric value that is new since the last look: its curve, last and best."""
        metrics = self.record["metrics"]
        for key, value in trainer.callback_metrics.items():
            if key.startswith(NOT_METRICS):
                continue
            if self._seen.get(key) is value:
                continue  # the same tensor object: no evaluation logged this key since
            self._seen[key] = value
            point = {"value": float(value), "step": trainer.global_step}
            metrics["last"][key] = point
            self.record["curves"].setdefault(key, []).append([point["step"], point["value"]])
            best, direction = metrics["best"].get(key), records.metric_direction(key)
            if best is None or (direction == "min" and point["value"] < best["value"]):
                metrics["best"][key] = point
            elif direction == "max" and point["value"] > best["value"]:
                metrics["best"][key] = point
        loss = trainer.callback_metrics.get("train/loss")
        self.record["train_loss"] = None if loss is None else float(loss)

    def _files(self, pl_module) -> None:
        """The newest checkpoint (periodic, last or non-finite stop) and the sample grids written so far."""
        ckpts = [p for p in (self.run_dir / "checkpoints").glob("*.ckpt") if p.is_file()]
        if ckpts:
            self.record["checkpoint"] = str(max(ckpts, key=lambda p: p.stat().st_mtime_ns).resolve())
        grids = sorted(str(p.resolve()) for p in (self.run_dir / "samples").glob("*.png"))
        self.record["sample_grids"] = list(dict.fromkeys([*self.record["sample_grids"], *grids]))

    def _write(self, trainer, pl_module, status: str | None = None, error: str | None = None) -> None:
        if self.record is None:  # failed before train start
            self._start(trainer)
        record = self.record
        self._collect(trainer)
        self._files(pl_module)
        wall = time.monotonic() - self._t0
        done = trainer.global_step
        record.update(
            status=status or "running",
            error=error,
            steps={"done": done, "total": trainer.max_steps if trainer.max_steps > 0 else None},
            wall_seconds=round(self._wall0 + wall, 2),
            steps_per_second=round((done - self._step0) / wall, 4) if wall > 0 and done > self._step0 else None,
            updated=records.now(),
        )
        on_disk = self._earlier_record()  # lct.evaluate may have added scores (records.add_eval) meanwhile
        record["eval"] = {**record["eval"], **((on_disk or {}).get("eval") or {})}
        records.write_record(self.run_dir, record)
