"""lct's loggers: a CSV logger that keeps one metrics file per run directory across resumed attempts, a
wandb logger grouped by sweep and tagged by config-group choice, and what every logger gets as the run's
hyperparameters (docs/records.md)."""

from __future__ import annotations

import csv
import os
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf


class _AppendingWriter(ExperimentWriter):
    """Appends to an existing metrics.csv (Lightning's writer deletes it) and keeps its columns."""

    def _check_log_dir_exists(self) -> None:
        if os.path.isfile(self.metrics_file_path):
            with open(self.metrics_file_path, newline="") as f:
                self.metrics_keys = next(csv.reader(f), [])


class ResumableCSVLogger(CSVLogger):
    """CSVLogger writing <save_dir>/<name>/version_0/metrics.csv; a resumed run appends to it, so rows
    of steps redone after the resumed checkpoint appear twice (the later row is the one that counts)."""

    def __init__(self, save_dir: str, name: str = "csv", **kwargs):
        super().__init__(save_dir, name=name, version=0, **kwargs)

    @property
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment


def _hydra_node(cfg: DictConfig | None, run_dir) -> DictConfig | None:
    """The run's Hydra node: cfg.hydra when composed with return_hydra_config=True, else the Hydra
    runtime's if it describes this run directory (a test process may hold a finished run's)."""
    if cfg is not None and "hydra" in cfg:
        return cfg.hydra
    if not HydraConfig.initialized():
        return None  # composed without Hydra's runtime (tests/train_utils.py): nothing to read
    node = HydraConfig.get()
    output_dir = OmegaConf.select(node, "runtime.output_dir", default=None)
    if run_dir is None or output_dir is None or Path(output_dir).resolve() != Path(run_dir).resolve():
        return None
    return node


def hydra_meta(cfg: DictConfig | None = None, run_dir=None) -> dict:
    """choices ({group: option}, hydra/* left out), overrides (the task's command-line overrides),
    multirun (bool), sweep_dir and job_dir of the run, from its Hydra node; empty when there is none."""
    run_dir = run_dir if run_dir is not None else (OmegaConf.select(cfg, "paths.output_dir") if cfg else None)
    node = _hydra_node(cfg, run_dir)
    if node is None:
        return {"choices": {}, "overrides": [], "multirun": False, "sweep_dir": None, "job_dir": run_dir}
    choices = OmegaConf.to_container(node.runtime.choices) if "choices" in node.runtime else {}
    return {
        "choices": {k: v for k, v in choices.items() if k != "hydra" and not k.startswith("hydra/")},
        "overrides": [str(o) for o in OmegaConf.select(node, "overrides.task", default=[]) or []],
        "multirun": str(OmegaConf.select(node, "mode", default="")) == str(RunMode.MULTIRUN),
        "sweep_dir": OmegaConf.select(node, "sweep.dir", default=None),
        "job_dir": run_dir,
    }


def hyperparameters(config: dict, meta: dict) -> dict:
    """What every logger records as the run's hyperparameters: the resolved config, the group choices
    and the overrides (TensorBoard flattens the nesting itself: choices/coupling, optimizer/lr, ...)."""
    return {"choices": dict(meta["choices"]), "overrides": list(meta["overrides"]), **config}


def wandb_tags(choices: dict) -> list[str]:
    """One tag per config group, "group:option" (wandb caps a tag at 64 characters)."""
    return [f"{group}:{'null' if option is None else option}"[:64] for group, option in sorted(choices.items())]


class WandbLogger(LightningWandbLogger):
    """Lightning's WandbLogger whose run is grouped for sweeps: left null, `group` is the multirun
    directory's name (wandb then averages a sweep's seeds), `tags` the config-group choices and `name`
    the run directory's name in a sweep (else job_type: the experiment, conf/logger/wandb.yaml)."""

    def __init__(self, run_dir: str | None = None, group=None, tags=None, name=None, **kwargs):
        meta = hydra_meta(run_dir=run_dir)
        if group is None and meta["multirun"] and meta["sweep_dir"]:
            group = Path(meta["sweep_dir"]).name
        if name is None and meta["multirun"] and run_dir:
            name = Path(run_dir).name
        if tags is None:
            tags = wandb_tags(meta["choices"])
        super().__init__(group=group, tags=list(tags), name=name or kwargs.get("job_type"), **kwargs)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        """Finish the wandb run when the fit ends: runs of a sequential sweep share one process, and
        wandb.init would otherwise hand the next run this one; finishing also writes the offline files."""
        super().finalize(status)
        if self._experiment is not None and not getattr(self, "_finished", False):
            self._finished = True
            self._experiment.finish(exit_code=0 if status == "success" else 1)
