"""Resumable encoding of an image source into latent shards (the engine behind `python -m lct.encode`)."""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from lct.data.shards import (FORMAT, MEAN, METADATA, STD, LatentDataError, LatentShards, array_sha,
                             atomic_save_npy, atomic_write_json, read_metadata)
from lct.data.sources import open_source, to_model_input
from lct.data.stats import RunningMoments, channel_summary
from lct.data.vae import describe_vae, load_vae

log = logging.getLogger(__name__)


@dataclass
class EncodeOptions:
    source: str                          # image folder, `mnist` or `skimage`
    out: str                             # latent root
    vae: str = "stabilityai/sd-vae-ft-ema"
    size: int = 256                      # images are resized (shorter side) and center-cropped to this
    flip: bool = False                   # also store a horizontally flipped copy (LSUN Church recipe)
    posterior: str = "sample"            # the paper encodes posterior samples; `mean` is deterministic
    seed: int = 0
    batch_size: int = 32
    shard_items: int = 2048              # source images per shard, the unit of resume
    device: str = "auto"
    strict: bool = False                 # stop at the first unreadable image instead of skipping it
    workers: int = 4                     # threads decoding image files
    max_shards: int | None = None        # stop after this many new shards (a deliberate interruption)
    command: str = ""


def _settings(opts: EncodeOptions, source, vae_info: dict) -> dict:
    """Everything that decides the shard contents: a resume must match it exactly."""
    return {"source": source.spec, "items": len(source), "size": opts.size, "flip": opts.flip,
            "posterior": opts.posterior, "seed": opts.seed, "shard_items": opts.shard_items,
            "vae_config_hash": vae_info["config_hash"], "vae_weights": vae_info["weights_fingerprint"]}


def _start_or_resume(root: Path, settings: dict, vae_info: dict, opts: EncodeOptions) -> dict:
    if (root / METADATA).is_file():
        meta = read_metadata(root, require_complete=False)
        if meta["settings"] != settings:
            diff = sorted(k for k in settings if meta["settings"].get(k) != settings[k])
            raise LatentDataError(
                f"{root / METADATA} was written with other settings ({', '.join(diff)} differ); "
                "rerun with the recorded settings to resume, or choose another --out"
            )
        log.info("resuming %s at source item %d (%d latents so far)", root, meta["next_item"], meta["count"])
        return meta
    downsample = vae_info["downsample"]
    if opts.size % downsample:
        raise LatentDataError(
            f"--size {opts.size} is not a multiple of the VAE's downsampling {downsample}; pass a multiple of it"
        )
    return {
        "format": FORMAT, "complete": False, "settings": settings, "vae": vae_info,
        "image": {"channels": vae_info["in_channels"], "size": opts.size},
        "latent": {"shape": [vae_info["latent_channels"], opts.size // downsample, opts.size // downsample],
                   "dtype": "float32", "scale": "native: posterior of vae.encode, no scaling_factor"},
        "source": {"spec": settings["source"], "items": settings["items"]}, "flip": opts.flip,
        "posterior": opts.posterior, "count": 0, "next_item": 0, "shards": [], "skipped": [],
        "provenance": {"command": opts.command, "options": asdict(opts)},
    }


def _load_images(source, items: range, opts: EncodeOptions, channels: int, pool) -> tuple[list, list]:
    """Preprocessed (item, flip, array) triples and the skipped [{path, error}] of one shard."""
    def load(i):
        try:
            return i, source.load(i), None
        except Exception as err:  # noqa: BLE001 -- any decoder failure means "unreadable image"
            return i, None, f"{type(err).__name__}: {err}"

    ready, skipped = [], []
    for i, image, error in pool.map(load, items):
        if error is not None:
            if opts.strict:
                raise LatentDataError(f"unreadable image {source.describe(i)} ({error}); "
                                      "drop --strict to skip such files")
            log.warning("skipping unreadable image %s (%s)", source.describe(i), error)
            skipped.append({"path": source.describe(i), "error": error})
            continue
        for flip in (False, True) if opts.flip else (False,):
            ready.append((i, flip, to_model_input(image, opts.size, channels, flip)))
    return ready, skipped


@torch.no_grad()
def _encode_batch(vae, batch: list, opts: EncodeOptions, device) -> np.ndarray:
    x = torch.from_numpy(np.stack([b[2] for b in batch])).to(device)
    posterior = vae.encode(x).latent_dist
    z = posterior.mean
    if opts.posterior == "sample":
        # One noise stream per (item, flip): the sample does not depend on batching, shards,
        # resume points or device (what DiagonalGaussianDistribution.sample does, made reproducible).
        eps = torch.stack([
            torch.randn(z.shape[1:], generator=torch.Generator().manual_seed(
                (opts.seed * 1_000_003 + i) * 2 + int(flip)))
            for i, flip, _ in batch
        ]).to(device)
        z = z + posterior.std * eps
    return z.float().cpu().numpy()


def _write_shard(root: Path, meta: dict, latents: np.ndarray, items: range, skipped: list) -> None:
    """Shard file first, then the metadata that lists it: both via os.replace."""
    if len(latents):
        name = f"shards/{len(meta['shards']):06d}.npy"
        atomic_save_npy(root / name, latents)
        meta["shards"].append({"file": name, "count": len(latents), "items": [items.start, items.stop]})
    meta["count"] += len(latents)
    meta["next_item"] = items.stop
    meta["skipped"].extend(skipped)
    meta["n_skipped"] = len(meta["skipped"])
    atomic_write_json(root / METADATA, meta)


def encode_latents(opts: EncodeOptions) -> dict:
    """Encode `opts.source` into `opts.out`; resumes an unfinished run; returns the metadata."""
    if opts.posterior not in ("sample", "mean"):
        raise LatentDataError(f"--posterior must be 'sample' or 'mean', not {opts.posterior!r}")
    for flag, value in (("--size", opts.size), ("--batch-size", opts.batch_size), ("--shard-items", opts.shard_items)):
        if value < 1:
            raise LatentDataError(f"{flag} {value} is invalid: it must be a positive number; pass {flag} <n> >= 1")
    root = Path(opts.out)
    source = open_source(opts.source)
    device = torch.device("cuda" if opts.device == "auto" and torch.cuda.is_available()
                          else "cpu" if opts.device == "auto" else opts.device)
    vae = load_vae(opts.vae, device)
    vae_info = describe_vae(vae, opts.vae)
    meta = _start_or_resume(root, _settings(opts, source, vae_info), vae_info, opts)
    if meta["complete"]:
        log.info("%s is already complete (%d latents)", root, meta["count"])
        return meta
    (root / "shards").mkdir(parents=True, exist_ok=True)
    atomic_write_json(root / METADATA, meta)  # an unfinished root is recognizable from the start
    channels, new_shards = vae_info["in_channels"], 0
    bar = tqdm(total=len(source), initial=meta["next_item"], desc="encode", unit="img")
    with ThreadPoolExecutor(max(1, opts.workers)) as pool:
        while meta["next_item"] < len(source):
            if opts.max_shards is not None and new_shards >= opts.max_shards:
                log.info("stopping after %d new shards as asked; rerun to resume", new_shards)
                return meta
            items = range(meta["next_item"], min(meta["next_item"] + opts.shard_items, len(source)))
            ready, skipped = _load_images(source, items, opts, channels, pool)
            batches = [ready[k:k + opts.batch_size] for k in range(0, len(ready), opts.batch_size)]
            parts = [_encode_batch(vae, b, opts, device) for b in batches]
            latents = np.concatenate(parts) if parts else np.zeros((0, *meta["latent"]["shape"]), np.float32)
            if not np.isfinite(latents).all():
                raise LatentDataError(
                    f"the VAE gave non-finite latents (NaN/inf) for source items {items.start}-{items.stop - 1} "
                    f"(shard {len(meta['shards']):06d} of {root}, not written); check those images and the VAE "
                    "weights, then rerun the same command to resume")
            _write_shard(root, meta, latents, items, skipped)
            new_shards += 1
            bar.update(len(items))
    bar.close()
    if meta["count"] < 2:
        raise LatentDataError(f"{opts.source}: only {meta['count']} readable images; nothing to train on")
    return finalize_stats(root, meta)


def finalize_stats(root: str | Path, meta: dict | None = None) -> dict:
    """Compute mu/s and per-channel summaries over all shards, then mark the root complete."""
    root = Path(root)
    meta = meta or read_metadata(root, require_complete=False)
    shards = LatentShards(root, meta)
    moments = RunningMoments()
    for entry, array in zip(meta["shards"], shards.arrays):
        for start in range(0, len(array), 4096):
            chunk = np.asarray(array[start:start + 4096], dtype=np.float32)
            if not np.isfinite(chunk).all():
                bad = start + int(np.flatnonzero(~np.isfinite(chunk).reshape(len(chunk), -1).all(1))[0])
                raise LatentDataError(
                    f"shard {root / entry['file']} holds non-finite latents (NaN/inf; first at row {bad}), so mu/s "
                    "would be NaN; re-encode that data (`python -m lct.encode` into a new --out) or fix the shard")
            moments.update(chunk)
    mean, std = moments.mean.astype(np.float32), moments.std().astype(np.float32)
    atomic_save_npy(root / MEAN, mean)
    atomic_save_npy(root / STD, std)
    meta["stats"] = {
        "mean": MEAN, "std": STD, "count": moments.n, "unbiased": True,
        "sha256": {MEAN: array_sha(mean), STD: array_sha(std)},
        "vae_weights": meta["vae"]["weights_fingerprint"],
        "per_channel": channel_summary(shards.iter_chunks()),
        "mean_range": [float(mean.min()), float(mean.max())],
        "std_range": [float(std.min()), float(std.max())],
    }
    meta["complete"] = True
    meta["provenance"]["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    atomic_write_json(root / METADATA, meta)
    log.info("%s: %d latents %s, %d skipped", root, meta["count"], meta["latent"]["shape"],
             meta.get("n_skipped", 0))
    return meta


def write_array_root(root: str | Path, chunks, vae_info: dict | None = None, image: dict | None = None,
                     command: str = "") -> dict:
    """A latent root from latents already in memory (one shard per chunk of (n, C, H, W) float32):
    for latents made elsewhere, synthetic benchmarks and tests. No VAE is attached unless given."""
    root = Path(root)
    (root / "shards").mkdir(parents=True, exist_ok=True)
    vae_info = vae_info or {"ref": None, "config_hash": None, "weights_fingerprint": None}
    meta = {"format": FORMAT, "complete": False, "settings": {"source": "arrays"}, "vae": vae_info,
            "image": image or {"channels": None, "size": None}, "latent": None,
            "source": {"spec": "arrays", "items": None}, "flip": False, "posterior": None, "count": 0,
            "next_item": 0, "shards": [], "skipped": [], "provenance": {"command": command}}
    for chunk in chunks:
        chunk = np.ascontiguousarray(chunk, dtype=np.float32)
        meta["latent"] = meta["latent"] or {"shape": list(chunk.shape[1:]), "dtype": "float32"}
        _write_shard(root, meta, chunk, range(meta["next_item"], meta["next_item"] + len(chunk)), [])
    return finalize_stats(root, meta)
