"""Training-side plumbing: crash-safe checkpoint writes and a checkpoint at the end of every run."""
from __future__ import annotations

import os
from pathlib import Path

import torch
from lightning.pytorch import Callback
from lightning.pytorch.plugins.io import TorchCheckpointIO


class AtomicCheckpointIO(TorchCheckpointIO):
    """torch.save to a temporary file in the same folder, then os.replace: a kill mid-save never corrupts
    the previous checkpoint (Lightning's default writes the target path in place)."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            torch.save(checkpoint, tmp)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)


class FinalCheckpoint(Callback):
    """Write <dirpath>/last.ckpt when training ends, whatever step it ends on."""

    def __init__(self, dirpath: str):
        self.dirpath = dirpath

    def on_train_end(self, trainer, pl_module) -> None:
        trainer.save_checkpoint(os.path.join(self.dirpath, "last.ckpt"))
