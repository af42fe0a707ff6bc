"""Non-finite latents found before training: one pass over a root's shards, cached beside them.

A NaN/inf latent makes every batch that draws it a non-finite loss, which training can only skip step by
step; found up front, the run refuses naming shard and row, or (data.skip_nonfinite=true) leaves the rows
out of sampling. The result is cached, keyed by each shard's size and modification time, so a second run
reads no shard: beside the shards in a built-in root (lct's own cache, lct.data.builtin), and for any other
root, which lct only reads, in $LCT_CACHE_DIR (default $XDG_CACHE_HOME/lct or ~/.cache/lct) under a name
derived from the root's path. Where the cache cannot be written the root is scanned without one.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np

from lct.data.shards import MARKER, LatentDataError

log = logging.getLogger(__name__)

SCAN = "nonfinite_scan.json"
FORMAT = "lct-nonfinite-scan/1"
CHUNK = 4096  # latents per read: bounded memory on any shard size
SHOWN = 5  # rows named in a message before "and N more"


def _stamp(path: Path) -> dict:
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def shard_bad_rows(path: Path) -> list[int]:
    """Rows of one .npy shard holding any NaN/inf value (read in chunks through a memory map)."""
    array = np.load(path, mmap_mode="r", allow_pickle=False)
    rows: list[int] = []
    for start in range(0, len(array), CHUNK):
        chunk = np.asarray(array[start:start + CHUNK]).reshape(min(CHUNK, len(array) - start), -1)
        rows.extend((start + np.flatnonzero(~np.isfinite(chunk).all(1))).tolist())
    return rows


def cache_path(root: Path) -> Path:
    """Where the scan of `root` is cached: in a built-in root itself, else in lct's cache directory."""
    if (root / MARKER).is_file():
        return root / SCAN
    base = os.environ.get("LCT_CACHE_DIR") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lct"
    return Path(base) / "nonfinite" / (hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16] + ".json")


def _read_cache(path: Path, root: Path) -> dict | None:
    """The cached entries, {} when there is none, None when `path` is a file lct did not write (left alone)."""
    if not path.is_file():
        return {}
    try:
        cache = json.loads(path.read_text())
    except (OSError, ValueError):
        return None   # ours are written whole (os.replace): this file is someone else's
    if not isinstance(cache, dict) or cache.get("format") != FORMAT:
        return None
    return (cache.get("shards") or {}) if cache.get("root") == str(root.resolve()) else {}


def _write_cache(path: Path, root: Path, shards: dict) -> None:
    """Atomically, under a per-process temporary name (DDP ranks may write at once); skipped where the
    cache cannot be written (a read-only root or home)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps({"format": FORMAT, "root": str(root.resolve()), "shards": shards}) + "\n")
        os.replace(tmp, path)
    except OSError as err:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        log.info("non-finite scan of %s not cached (%s); the next run scans again", root, err.strerror or err)


def scan_nonfinite(root: str | os.PathLike, meta: dict) -> dict[str, list[int]]:
    """{shard file: [rows]} of every shard in `meta` holding non-finite latents; cached per shard."""
    root = Path(root)
    cached_at = cache_path(root)
    cache = _read_cache(cached_at, root)
    entries, fresh = {}, False
    for entry in meta["shards"]:
        shard = root / entry["file"]
        stamp = _stamp(shard)
        hit = (cache or {}).get(entry["file"])
        if isinstance(hit, dict) and all(hit.get(k) == v for k, v in stamp.items()):
            entries[entry["file"]] = hit
        else:
            entries[entry["file"]], fresh = {**stamp, "rows": shard_bad_rows(shard)}, True
    if cache is not None and (fresh or set(cache) != set(entries)):
        _write_cache(cached_at, root, entries)
    return {name: list(e["rows"]) for name, e in entries.items() if e["rows"]}


def describe(root: Path, bad: dict[str, list[int]]) -> str:
    """'ROOT/shards/000001.npy rows 2, 7; ...' for a message, at most SHOWN rows per shard."""
    parts = []
    for name, rows in bad.items():
        more = f" and {len(rows) - SHOWN} more" if len(rows) > SHOWN else ""
        parts.append(f"{root / name} row{'s' if len(rows) > 1 else ''} {', '.join(map(str, rows[:SHOWN]))}{more}")
    return "; ".join(parts)


def check_nonfinite(root: Path, meta: dict, skip: bool) -> dict[str, list[int]]:
    """The scan's verdict: refuse (one line naming shard and row) unless `skip`, which logs what it leaves out."""
    bad = scan_nonfinite(root, meta)
    if not bad:
        return bad
    total = sum(len(rows) for rows in bad.values())
    if not skip:
        raise LatentDataError(
            f"non-finite latents (NaN/inf) in {describe(root, bad)} ({total} of {meta['count']} latents); every "
            "batch drawing one would be skipped. Set data.skip_nonfinite=true to leave them out of training, or "
            "re-encode that data (`python -m lct.encode` into a new --out)"
        )
    log.warning("data.skip_nonfinite=true: leaving %d non-finite latents out of sampling: %s", total,
                describe(root, bad))
    return bad


def finite_indices(offsets: np.ndarray, meta: dict, bad: dict[str, list[int]]) -> np.ndarray | None:
    """Global indices of the latents to sample (None: all of them), given LatentShards' shard offsets."""
    if not bad:
        return None
    starts = {entry["file"]: int(offsets[k]) for k, entry in enumerate(meta["shards"])}
    drop = np.array([starts[name] + r for name, rows in bad.items() for r in rows], dtype=np.int64)
    return np.setdiff1d(np.arange(int(offsets[-1]), dtype=np.int64), drop)
