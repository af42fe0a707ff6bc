"""Training-side plumbing: crash-safe checkpoint writes, a checkpoint at the end of every run, and a clean exit
for multi-process runs."""

from __future__ import annotations

import atexit
import os
import re
import shutil
from pathlib import Path

import torch
from lightning.pytorch import Callback
from lightning.pytorch.plugins.io import TorchCheckpointIO

from lct.errors import LctError
from lct.io.ckpt_file import read_checkpoint_file

# The temporary name of a checkpoint being written (.<name>.tmp-<pid>); lct.train.resume removes the
# ones whose writer was killed.
TMP_PATTERN = re.compile(r"^\.(?P<name>.+)\.tmp-(?P<pid>\d+)$")


def tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


class AtomicCheckpointIO(TorchCheckpointIO):
    """torch.save to a temporary file in the same folder, then os.replace: a kill mid-save never corrupts
    the previous checkpoint (Lightning's default writes the target path in place). Reads go through
    read_checkpoint_file: weights_only=True, and a bad file is an LctError naming it."""

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict:
        return read_checkpoint_file(path)

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = tmp_name(path)
        try:
            torch.save(checkpoint, tmp)
            os.replace(tmp, path)
        except (OSError, RuntimeError) as err:
            # A full disk surfaces as OSError (ENOSPC) or as torch's "inline_container.cc ... unexpected pos".
            free = shutil.disk_usage(path.parent).free / 2**30
            reason = " ".join(str(err).split())[:160]
            raise LctError(
                f"could not write checkpoint {path} ({type(err).__name__}: {reason}); {free:.2f} GiB "
                f"free in {path.parent}. Free disk space (or point hydra.run.dir at a larger disk) and "
                "rerun the same command: it resumes from the newest checkpoint already written"
            ) from err
        finally:
            tmp.unlink(missing_ok=True)


class FinalCheckpoint(Callback):
    """Write <dirpath>/last.ckpt when training ends, whatever step it ends on."""

    def __init__(self, dirpath: str):
        self.dirpath = dirpath

    def on_train_end(self, trainer, pl_module) -> None:
        # weights_only=False: the full training state (optimizer, loops, callbacks), so the run can resume.
        trainer.save_checkpoint(os.path.join(self.dirpath, "last.ckpt"), weights_only=False)


def destroy_process_group() -> None:
    """Destroy torch.distributed's default process group, if this process has one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


class ReleaseProcessGroup(Callback):
    """Destroy the default process group when a DDP rank's interpreter exits.

    Lightning does this for NCCL only. A gloo group (``trainer=ddp_cpu``) left alive when its process exits
    can abort that process ("terminate called without an active exception": its threads outlive the
    interpreter; 9 of 60 two-rank runs on a 2-core CPU), and ddp_spawn then reports a finished run as a
    crashed rank.
    ``benchmarks/ddp_exit.py`` measures the rate with and without this; lct.train always adds it.
    """

    _registered = False  # once per process: a rank may run several fits

    def setup(self, trainer, pl_module, stage: str) -> None:
        if trainer.world_size > 1 and not ReleaseProcessGroup._registered:
            atexit.register(destroy_process_group)
            ReleaseProcessGroup._registered = True
