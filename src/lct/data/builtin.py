"""Built-in latent datasets that work offline from a fresh clone: encoded on first use, then cached."""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path

from lct.data.encoding import EncodeOptions, encode_latents
from lct.data.scan import SCAN
from lct.data.shards import MARKER, MEAN, METADATA, STD, LatentDataError, read_metadata
from lct.errors import LctError

log = logging.getLogger(__name__)

# Encode settings per built-in. `sample` as in the paper; the fixed seed makes the cache reproducible.
BUILTIN_DATASETS = {
    "mnist": dict(source="mnist", vae="builtin:mnist", size=32, flip=False, posterior="sample", seed=0,
                  batch_size=500, shard_items=5000),
}
LEGACY_LOCK = ".lock"


def _clear(root: Path) -> None:
    """Remove only the files an encode run writes, in a root that carries lct's built-in MARKER."""
    for name in (METADATA, MEAN, STD, SCAN):
        (root / name).unlink(missing_ok=True)
    for shard in (root / "shards").glob("*.npy"):
        shard.unlink()


@contextlib.contextmanager
def root_lock(root: Path):
    """An exclusive lock on `root` that leaves no file in it: flock on the directory itself (or, where the
    file system refuses that, on a lock file named after the root in the temporary directory)."""
    fd = os.open(root, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError:
        os.close(fd)
        name = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]
        fd = os.open(Path(tempfile.gettempdir()) / f"lct-builtin-{name}.lock", os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:
            os.close(fd)
            raise
    try:
        yield
    finally:
        os.close(fd)   # releases the lock


def ensure_builtin(root: str | Path, name: str) -> dict:
    """Encode built-in `name` into `root` unless a complete cache made with the shipped VAE is there."""
    if name not in BUILTIN_DATASETS:
        raise LctError(f"unknown built-in dataset {name!r}; pick one of: {', '.join(BUILTIN_DATASETS)}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    opts = EncodeOptions(out=str(root), workers=1, command=f"LatentDataModule(builtin={name!r}).prepare_data()",
                         **BUILTIN_DATASETS[name])
    # Keeps two processes (a multirun, parallel tests) from encoding into one cache at once; the root may be
    # a user's folder given by mistake, so the lock writes nothing there.
    with root_lock(root):
        marker = root / MARKER
        if marker.exists():   # the lock file older versions left in lct's own cache
            (root / LEGACY_LOCK).unlink(missing_ok=True)
        if not (root / METADATA).exists() and not marker.exists():
            marker.write_text(json.dumps({"builtin": name, "written_by": "lct.data.builtin"}) + "\n")
        try:
            meta = encode_latents(opts)
        except LatentDataError as err:
            if not marker.exists():
                found = read_metadata(root, require_complete=False)
                raise LctError(
                    f"data.root={root} holds other latents ({found.get('count')} from "
                    f"{found.get('source', {}).get('spec')}, {root / METADATA}), not lct's built-in {name} cache, "
                    f"and lct will not overwrite them. To train on them use `data=folder data.root={root}`; for the "
                    f"built-in {name} choose another data.root"
                ) from None
            # A cache from an older shipped VAE or other settings, marked as ours: rebuild it.
            log.warning("rebuilding the built-in %s cache at %s (%s)", name, root, err)
            _clear(root)
            meta = encode_latents(opts)
        if not marker.exists():       # a complete cache with the built-in's exact settings is ours
            marker.write_text(json.dumps({"builtin": name, "written_by": "lct.data.builtin"}) + "\n")
        return meta
