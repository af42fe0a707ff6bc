"""On-disk latent format: memory-mappable .npy shards, mean.npy/std.npy and one metadata.json.

Layout of a latent root:
    metadata.json          # VAE identity, shapes, count, source, shard list, stats block, provenance
    shards/000000.npy      # float32 (n_i, C, H, W), z in the VAE's native scale (no scaling_factor)
    mean.npy, std.npy      # per-element mu and s, float32 (C, H, W)
Every file is written to a temporary name and moved into place with os.replace, shard before
metadata, so a crash never leaves metadata pointing at a missing or partial file.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from lct.errors import LctError

METADATA = "metadata.json"
MEAN, STD = "mean.npy", "std.npy"
FORMAT = "lct-latents/1"
# Written into a root before lct encodes a built-in there: only a root carrying it is lct's to rebuild.
MARKER = ".lct-builtin.json"


class LatentDataError(LctError, RuntimeError):
    """A latent root is missing, unfinished or inconsistent; the message names the file and the fix."""


def encode_hint(root) -> str:
    return f"python -m lct.encode --source <image folder or mnist> --vae <hub id or folder> --out {root}"


def atomic_write_json(path: Path, obj: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


def atomic_save_npy(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.save(f, array)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def array_sha(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array, dtype=np.float32).tobytes()).hexdigest()[:16]


def read_metadata(root: str | os.PathLike, require_complete: bool = True) -> dict:
    """metadata.json of a latent root, with clear errors for the usual mistakes."""
    root = Path(root)
    path = root / METADATA
    if not path.is_file():
        raise LatentDataError(
            f"no latents at {root}: {path} does not exist. Encode images first: `{encode_hint(root)}`"
        )
    try:
        meta = json.loads(path.read_text())
    except (ValueError, OSError) as err:
        raise LatentDataError(f"{path} is unreadable or cut off ({err}); re-encode with "
                              f"`{encode_hint(root)}`") from None
    if meta.get("format") != FORMAT:
        raise LatentDataError(f"{path} is not an lct latent metadata file (format {meta.get('format')!r})")
    if require_complete and not meta.get("complete"):
        raise LatentDataError(
            f"{path}: encoding stopped after {meta.get('count', 0)} latents and is not complete. "
            f"Rerun the same command to resume: `{meta.get('provenance', {}).get('command', encode_hint(root))}`"
        )
    return meta


def load_stats(root: str | os.PathLike, meta: dict) -> tuple[np.ndarray, np.ndarray]:
    """mu and s as float32 (C, H, W), checked against the shapes and hashes recorded in metadata."""
    root = Path(root)
    shape = tuple(meta["latent"]["shape"])
    fix = f"recompute them for these latents with `python -m lct.encode --stats-only --out {root}`"
    arrays = []
    for name in (MEAN, STD):
        path = root / name
        if not path.is_file():
            raise LatentDataError(f"{path} is missing; {fix}")
        array = _load_npy(path, fix)
        if array.shape != shape:
            raise LatentDataError(f"{path} has shape {array.shape}, latents are {shape}; {fix}")
        if array_sha(array) != meta["stats"]["sha256"][name]:
            raise LatentDataError(
                f"{path} does not belong to these latents (its hash differs from the one in "
                f"{root / METADATA}; stats of another VAE or dataset?); {fix}"
            )
        arrays.append(array.astype(np.float32))
    if not all(np.isfinite(a).all() for a in arrays):
        raise LatentDataError(f"{root / MEAN} or {root / STD} holds NaN/inf; {fix} (it names the shard with "
                              "non-finite latents)")
    if not np.all(arrays[1] > 0):
        raise LatentDataError(f"{root / STD} has zero entries: some latent element is constant over the "
                              "dataset, so x0 = 0.5 (z - mu) / s is undefined there")
    return arrays[0], arrays[1]


def _load_npy(path: Path, fix: str, **kwargs) -> np.ndarray:
    """np.load with the file named when it is truncated or not an .npy file."""
    try:
        return np.load(path, **kwargs)
    except (ValueError, OSError, EOFError) as err:
        raise LatentDataError(f"{path} is truncated or not a .npy array ({err}); {fix}") from None


class LatentShards:
    """Read-only view of all shards through memory maps: nothing is loaded until indexed."""

    def __init__(self, root: str | os.PathLike, meta: dict | None = None):
        self.root = Path(root)
        self.meta = meta or read_metadata(self.root)
        self.shape = tuple(self.meta["latent"]["shape"])
        self.arrays = [self._open(entry) for entry in self.meta["shards"]]
        counts = [len(a) for a in self.arrays]
        self.offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        if self.offsets[-1] != self.meta["count"]:
            raise LatentDataError(
                f"{self.root / METADATA} records {self.meta['count']} latents but the shards hold "
                f"{self.offsets[-1]}; re-encode with `{encode_hint(self.root)}`"
            )

    def _open(self, entry: dict) -> np.ndarray:
        path = self.root / entry["file"]
        if not path.is_file():
            raise LatentDataError(f"shard {path} listed in {self.root / METADATA} is missing; "
                                  f"rerun `{encode_hint(self.root)}`")
        array = _load_npy(path, f"re-encode with `{encode_hint(self.root)}`", mmap_mode="r")
        expected = (entry["count"], *self.shape)
        if array.shape != expected or array.dtype != np.float32:
            raise LatentDataError(
                f"shard {path} is {array.dtype} {array.shape} but {self.root / METADATA} says float32 "
                f"{expected}; the shard was not written by this encode run: re-encode with "
                f"`{encode_hint(self.root)}`"
            )
        return array

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __getstate__(self) -> dict:
        # Spawned DataLoader workers reopen the memory maps rather than receiving pickled data.
        return {"root": self.root, "meta": self.meta}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["root"], state["meta"])

    def gather(self, indices: np.ndarray) -> np.ndarray:
        """Latents at sorted global indices as one float32 (B, C, H, W) array (one copy per shard)."""
        shard_of = np.searchsorted(self.offsets, indices, side="right") - 1
        out = np.empty((len(indices), *self.shape), dtype=np.float32)
        cuts = [0, *(np.flatnonzero(np.diff(shard_of)) + 1), len(indices)]
        for a, b in zip(cuts[:-1], cuts[1:]):
            if b > a:
                k = shard_of[a]
                # Fancy indexing a memmap reads only the requested rows, straight into `out`.
                np.take(self.arrays[k], indices[a:b] - self.offsets[k], axis=0, out=out[a:b])
        return out

    def iter_chunks(self, chunk: int = 4096):
        """Sequential float32 chunks over all latents (for statistics)."""
        for array in self.arrays:
            for start in range(0, len(array), chunk):
                yield np.asarray(array[start:start + chunk], dtype=np.float32)
