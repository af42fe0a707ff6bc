"""A CSV logger that keeps one metrics file per run directory across resumed attempts."""

from __future__ import annotations

import csv
import os

from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter


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
