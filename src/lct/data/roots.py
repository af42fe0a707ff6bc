"""Finding a checkpoint's training latents again: runs made before lct recorded data.root absolute stored it
relative to their launch directory, which `lct.evaluate` run from elsewhere does not share."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

from lct.data.shards import MEAN, METADATA, array_sha
from lct.errors import LctError

log = logging.getLogger(__name__)


def root_candidates(stored: str, launch_dir: str | None, checkpoint: str | os.PathLike | None) -> list[Path]:
    """Where a relative `stored` root may be: the run's launch directory, each directory above the
    checkpoint (a run dir sits below its launch directory), then the current directory."""
    bases = [Path(launch_dir)] if launch_dir and os.path.isabs(launch_dir) else []
    if checkpoint is not None:
        bases += list(Path(checkpoint).expanduser().resolve().parents)
    bases.append(Path.cwd())
    return list(dict.fromkeys(base / stored for base in bases))


def same_latents(path: Path, codec_state: dict | None) -> bool:
    """`path` is a latent root, and (given the checkpoint's codec) the one whose mu the run normalised with."""
    try:
        meta = json.loads((path / METADATA).read_text())
    except (OSError, ValueError):
        return False
    if codec_state is None or codec_state.get("mean") is None:
        return True
    recorded = ((meta.get("stats") or {}).get("sha256") or {}).get(MEAN)
    return recorded == array_sha(np.asarray(codec_state["mean"], dtype=np.float32))


def find_data_root(cfg, checkpoint=None, data_root: str | None = None, codec_state: dict | None = None) -> Path:
    """The latent root a checkpoint trained on: `data_root` (--data-root) if given, else its recorded
    data.root, searched for as `root_candidates` says when relative; a candidate counts only if its mu is the
    checkpoint codec's. A built-in root found nowhere is rebuilt (lct owns it) where the current directory
    puts it; any other root found nowhere is one line."""
    if data_root:
        path = Path(data_root).expanduser().resolve()
        if not (path / METADATA).is_file():
            raise LctError(f"--data-root {path} holds no {METADATA}: pass the --out of the `python -m lct.encode` "
                           "run whose latents the checkpoint trained on")
        if not same_latents(path, codec_state):
            log.warning("--data-root %s: its mu differs from the one the checkpoint normalised with (other "
                        "latents, or re-encoded with other settings); the reference is computed from it anyway", path)
        return path
    stored = os.path.expanduser(str(cfg.data.root))
    builtin = cfg.data.get("builtin")
    tried = [Path(stored)] if os.path.isabs(stored) else root_candidates(
        stored, (cfg.get("paths") or {}).get("root_dir"), checkpoint)
    for path in tried:
        if same_latents(path, codec_state):
            if not os.path.isabs(stored):
                log.info("data.root %r of the checkpoint: latents found at %s", stored, path)
            return path
    if builtin:
        return tried[0] if os.path.isabs(stored) else Path.cwd() / stored
    where = ", ".join(str(p) for p in tried)
    others = [str(p) for p in tried if (p / METADATA).is_file()]
    other = f"; {', '.join(others)} hold other latents (their mu is not the checkpoint's)" if others else ""
    raise LctError(
        f"the checkpoint's training latents data.root={stored!r} were not found (tried {where}{other}); pass "
        "--data-root <the --out of the `python -m lct.encode` run it trained on>, or --reference-images <real "
        "images> / --reference <statistics cache>"
    )
