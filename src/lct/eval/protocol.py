"""The paper's evaluation protocol, resumable: generated features persisted in chunks, then scored.

Chunk files hold the Inception features of seeds [start, end) for one sigma list; a rerun skips every
chunk whose metadata (checkpoint, EMA, sigmas, seeds, extractor) matches, so an interrupted 50k run
continues where it stopped.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from .sampling import generate

CHUNK_SIZE = 1000


def run_tag(sigmas: Sequence[float]) -> str:
    """Folder name for one sigma list, e.g. nfe2_s0.4384."""
    return f"nfe{len(sigmas)}_" + "_".join(f"s{float(s):.4g}" for s in sigmas)


def _chunk_meta(meta: dict, start: int, end: int) -> dict:
    return {**meta, "start": int(start), "end": int(end)}


def sample_features(sample_fn: Callable, decode: Callable, extractor, seeds: Sequence[int], latent_shape,
                    sigmas: Sequence[float], batch_size: int, device, work_dir: Path | None, meta: dict,
                    chunk_size: int = CHUNK_SIZE, progress: bool = True) -> torch.Tensor:
    """(N, 2048) features of the samples for `seeds` at `sigmas`, reusing matching chunks in work_dir."""
    from tqdm.auto import tqdm
    meta = {**meta, "sigmas": [float(s) for s in sigmas], "extractor": extractor.extractor_id,
            "resize": extractor.resize_mode}
    folder = Path(work_dir) / run_tag(sigmas) if work_dir is not None else None
    feats = []
    bar = tqdm(total=len(seeds), desc=f"{len(sigmas)} NFE", unit="img", disable=not progress)
    for start in range(0, len(seeds), chunk_size):
        chunk_seeds = list(seeds[start:start + chunk_size])
        want = _chunk_meta(meta, chunk_seeds[0], chunk_seeds[-1] + 1)
        path = folder / f"chunk_{chunk_seeds[0]:08d}.pt" if folder is not None else None
        cached = _load_chunk(path, want)
        if cached is None:
            parts = [extractor(images) for _, _, images in
                     generate(sample_fn, chunk_seeds, latent_shape, sigmas, batch_size, decode, device)]
            cached = torch.cat(parts).float().cpu()
            _save_chunk(path, cached, want)
        feats.append(cached)
        bar.update(len(chunk_seeds))
    bar.close()
    return torch.cat(feats)


def _load_chunk(path: Path | None, want: dict) -> torch.Tensor | None:
    if path is None or not path.is_file():
        return None
    d = torch.load(path, map_location="cpu", weights_only=True)
    return d["features"] if json.loads(d["meta"]) == want else None


def _save_chunk(path: Path | None, feats: torch.Tensor, meta: dict) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")    # atomic: a killed run leaves no half-written chunk
    torch.save({"features": feats, "meta": json.dumps(meta, sort_keys=True)}, tmp)
    tmp.replace(path)


def score(metrics, feats: torch.Tensor) -> dict:
    """FID/KID/precision/recall of generated features against the metrics' seeded reference."""
    metrics.reset_fake()
    for block in feats.split(4096):
        metrics.update_features(block)
    return metrics.compute()


def file_fingerprint(path: str | Path) -> str:
    """Cheap identity of a checkpoint file for chunk metadata: name, size, mtime, first MiB hash."""
    p = Path(path)
    st = p.stat()
    with open(p, "rb") as fh:
        head = hashlib.sha1(fh.read(1 << 20)).hexdigest()[:16]
    return f"{p.resolve()}:{st.st_size}:{int(st.st_mtime)}:{head}"


#----------------------------------------------------------------------------
# Real images given as files (an alternative to decoding the training latents).

def load_images(path: str | Path) -> torch.Tensor:
    """(N, C, H, W) images from .npz/.npy/.pt (uint8 NHWC/NCHW or float in [-1,1]) or a folder of PNG/JPG."""
    p = Path(path)
    if p.is_dir():
        from PIL import Image
        files = sorted(f for f in p.iterdir() if f.suffix.lower() in (".png", ".jpg", ".jpeg"))
        if not files:
            raise ValueError(f"no .png/.jpg images in {p}")
        arr = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])
    elif p.suffix == ".npz":
        with np.load(p) as z:
            arr = z["images"] if "images" in z else z[z.files[0]]
    elif p.suffix == ".npy":
        arr = np.load(p)
    elif p.suffix == ".pt":
        arr = torch.load(p, map_location="cpu", weights_only=True).numpy()
    else:
        raise ValueError(f"unsupported image source {p} (a folder, .npz, .npy or .pt)")
    x = torch.from_numpy(np.ascontiguousarray(arr))
    if x.ndim == 3:
        x = x[:, None]                                  # (N, H, W) greyscale
    if x.shape[1] not in (1, 3) and x.shape[-1] in (1, 3):
        x = x.permute(0, 3, 1, 2)                       # NHWC -> NCHW
    return x.contiguous()
