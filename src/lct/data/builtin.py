"""Built-in latent datasets that work offline from a fresh clone: encoded on first use, then cached."""
from __future__ import annotations

import fcntl
import logging
from pathlib import Path

from lct.data.encoding import EncodeOptions, encode_latents
from lct.data.shards import MEAN, METADATA, STD, LatentDataError

log = logging.getLogger(__name__)

# Encode settings per built-in. `sample` as in the paper; the fixed seed makes the cache reproducible.
BUILTIN_DATASETS = {
    "mnist": dict(source="mnist", vae="builtin:mnist", size=32, flip=False, posterior="sample", seed=0,
                  batch_size=500, shard_items=5000),
}


def _clear(root: Path) -> None:
    """Remove only the files an encode run writes (the root may be shared with other things)."""
    for name in (METADATA, MEAN, STD):
        (root / name).unlink(missing_ok=True)
    for shard in (root / "shards").glob("*.npy"):
        shard.unlink()


def ensure_builtin(root: str | Path, name: str) -> dict:
    """Encode built-in `name` into `root` unless a complete cache made with the shipped VAE is there."""
    if name not in BUILTIN_DATASETS:
        raise ValueError(f"unknown built-in dataset {name!r}; available: {', '.join(BUILTIN_DATASETS)}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    opts = EncodeOptions(out=str(root), workers=1, command=f"LatentDataModule(builtin={name!r}).prepare_data()",
                         **BUILTIN_DATASETS[name])
    # A lock file keeps two processes (a multirun, parallel tests) from encoding into one cache at once.
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return encode_latents(opts)
        except LatentDataError as err:
            # A cache from an older shipped VAE or other settings: it is ours to rebuild.
            log.warning("rebuilding the built-in %s cache at %s (%s)", name, root, err)
            _clear(root)
            return encode_latents(opts)
