"""Reading a checkpoint file without running code from it (torch.load with weights_only=True)."""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from lct.errors import LctError


def read_checkpoint_file(path, mmap: bool = False) -> dict:
    """The checkpoint dict at `path`; LctError for a missing, truncated, foreign or unsafe file.
    `mmap` maps tensors from the file instead of reading them (cheap when only the metadata is needed)."""
    path = Path(path)
    if not path.is_file():
        raise LctError(f"no checkpoint at {path}; pass a .ckpt written by `python -m lct.train`")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as err:
        refused = [line.strip() for line in str(err).splitlines() if "GLOBAL" in line]
        if refused:
            raise LctError(
                f"{path} was not loaded: it holds Python objects that could run code when unpickled "
                f"({refused[0]}); lct checkpoints hold only tensors and plain values: use a checkpoint "
                "written by `python -m lct.train`"
            ) from None
        raise LctError(
            f"{path} is not a checkpoint (its pickle is not one torch.save writes); pass a .ckpt "
            "written by `python -m lct.train`"
        ) from None
    except Exception as err:  # noqa: BLE001 -- whatever a foreign or cut-off file makes torch.load raise
        raise LctError(
            f"{path} is truncated or not a checkpoint ({_first_line(err)}); use another checkpoint "
            "of the run (e.g. checkpoints/epoch=*-step=*.ckpt) or retrain"
        ) from None
    if not isinstance(ckpt, dict):
        raise LctError(
            f"{path} holds a {type(ckpt).__name__}, not a checkpoint dict; pass a .ckpt written by "
            "`python -m lct.train`"
        )
    return ckpt


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0].split('. ')[0][:160]}" if lines else type(err).__name__
