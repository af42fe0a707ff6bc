"""The paper's evaluation protocol, resumable: generated features persisted in chunks, then scored.

Chunk files hold the Inception features of seeds [start, end) for one sigma list; a rerun skips every
chunk whose metadata (checkpoint, EMA, sigmas, seeds, extractor) matches, so an interrupted 50k run
continues where it stopped.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from lct.errors import LctError

from .sampling import seeded_batches

CHUNK_SIZE = 1000


def run_tag(sigmas: Sequence[float]) -> str:
    """Folder name for one sigma list, e.g. nfe2_s0.4384."""
    return f"nfe{len(sigmas)}_" + "_".join(f"s{float(s):.4g}" for s in sigmas)


def _chunk_meta(meta: dict, start: int, end: int) -> dict:
    return {**meta, "start": int(start), "end": int(end)}


def sample_features(
    sample_fn: Callable,
    decode: Callable,
    extractor,
    seeds: Sequence[int],
    latent_shape,
    sigmas: Sequence[float],
    batch_size: int,
    device,
    work_dir: Path | None,
    meta: dict,
    chunk_size: int = CHUNK_SIZE,
    progress: bool = True,
) -> torch.Tensor:
    """(N, 2048) features of the samples for `seeds` at `sigmas`, reusing matching chunks in work_dir."""
    from tqdm.auto import tqdm

    meta = {
        **meta,
        "sigmas": [float(s) for s in sigmas],
        "extractor": extractor.extractor_id,
        "resize": extractor.resize_mode,
    }
    folder = Path(work_dir) / run_tag(sigmas) if work_dir is not None else None
    feats = []
    bar = tqdm(total=len(seeds), desc=f"{len(sigmas)} NFE", unit="img", disable=not progress)
    for start in range(0, len(seeds), chunk_size):
        chunk_seeds = list(seeds[start : start + chunk_size])
        want = _chunk_meta(meta, chunk_seeds[0], chunk_seeds[-1] + 1)
        path = folder / f"chunk_{chunk_seeds[0]:08d}.pt" if folder is not None else None
        cached = _load_chunk(path, want)
        if cached is None:
            parts = [
                extractor(images)
                for _, _, images in seeded_batches(
                    sample_fn, chunk_seeds, latent_shape, sigmas, batch_size, decode, device
                )
            ]
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
    tmp = path.with_suffix(".tmp")  # atomic: a killed run leaves no half-written chunk
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


# ----------------------------------------------------------------------------
# Real images given as files (an alternative to decoding the training latents).


def load_images(path: str | Path) -> torch.Tensor:
    """(N, C, H, W) images from .npz/.npy/.pt (uint8 NHWC/NCHW or float in [-1,1]) or a folder of PNG/JPG."""
    p = Path(path)
    if p.is_dir():
        from PIL import Image

        files = sorted(f for f in p.iterdir() if f.suffix.lower() in (".png", ".jpg", ".jpeg"))
        if not files:
            raise LctError(f"no .png/.jpg images in {p}; pass a folder of images, or a .npz/.npy/.pt file of them")
        arr = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])
    elif p.suffix == ".npz":
        with np.load(p) as z:
            arr = z["images"] if "images" in z else z[z.files[0]]
    elif p.suffix == ".npy":
        arr = np.load(p)
    elif p.suffix == ".pt":
        arr = torch.load(p, map_location="cpu", weights_only=True).numpy()
    else:
        raise LctError(f"unsupported image source {p}: pass a folder of images, or a .npz, .npy or .pt file of them")
    x = torch.from_numpy(np.ascontiguousarray(arr))
    if x.ndim == 3:
        x = x[:, None]  # (N, H, W) greyscale
    if x.shape[1] not in (1, 3) and x.shape[-1] in (1, 3):
        x = x.permute(0, 3, 1, 2)  # NHWC -> NCHW
    return x.contiguous()


# ----------------------------------------------------------------------------
# The authors' FID pipeline (`lct.evaluate --protocol authors`), beside ours (torchmetrics' conventions:
# rounding to uint8, TF1 bilinear resize, (x-128)/128, reference = decoded training latents). Theirs:
# samples truncated to uint8 and saved as quality-75 JPEGs, read back as pytorch-fid does (torch
# bilinear resize of x/255, then 2x-1), against a folder of the real images saved the same way, with the
# sample count rounded up to whole global batches. The Inception weights are the same.

PROTOCOLS = ("ours", "authors")
AUTHORS_GLOBAL_BATCH = 256  # 50,000 requested -> 50,176 sampled and scored
AUTHORS_JPEG_QUALITY = 75  # PIL's default, with which samples and reference images were saved


def authors_sample_count(n: int, global_batch: int = AUTHORS_GLOBAL_BATCH) -> int:
    """Samples the authors' pipeline scores for `n` requested: n rounded up to whole global batches."""
    if n < 1 or global_batch < 1:
        raise LctError(f"need n >= 1 and global_batch >= 1, got n={n}, global_batch={global_batch}")
    return -(-int(n) // int(global_batch)) * int(global_batch)


def truncate_to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Float images in [-1, 1] -> uint8 by clamping and truncating (x+1)*127.5, as the authors save samples.

    uint8 images pass unchanged; ours rounds instead (lct.eval.inception.to_uint8).
    """
    if images.dtype == torch.uint8:
        return images
    return ((images.float().clamp(-1, 1) + 1) * 127.5).to(torch.uint8)  # .to(uint8) truncates


def jpeg_roundtrip(images: torch.Tensor, quality: int = AUTHORS_JPEG_QUALITY) -> torch.Tensor:
    """uint8 (B, 1|3, H, W) -> uint8 (B, 3, H, W) after saving each image as an RGB JPEG and reading it back."""
    import io

    from PIL import Image

    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected uint8 images (B, 1 or 3, H, W), got {images.dtype} {tuple(images.shape)}")
    out = []
    for img in images.expand(-1, 3, -1, -1).permute(0, 2, 3, 1).cpu().numpy():
        buf = io.BytesIO()
        Image.fromarray(img, "RGB").save(buf, format="JPEG", quality=int(quality))
        buf.seek(0)
        out.append(np.asarray(Image.open(buf).convert("RGB")))
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).contiguous().to(images.device)


def pytorch_fid_input(images: torch.Tensor, size: int = 299) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float in [-1, 1] at size x size: x/255, torch bilinear resize, 2x-1 (pytorch-fid)."""
    x = images.float() / 255
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return 2 * x - 1


class AuthorsFeatures(nn.Module):
    """The authors' pipeline in front of an FID network: truncate -> JPEG q75 -> pytorch-fid input -> net.

    `net` maps (B, 3, 299, 299) floats in [-1, 1] to (B, D) features (the TorchScript Inception's own
    input convention). (B, D) inputs are features already and pass unchanged, as for our extractors.
    """

    resize_mode = "torch_bilinear"

    def __init__(self, net: nn.Module, net_id: str, num_features: int = 2048, jpeg_quality: int = AUTHORS_JPEG_QUALITY):
        super().__init__()
        self.net, self.net_id, self.num_features, self.jpeg_quality = net, net_id, int(num_features), int(jpeg_quality)

    @property
    def extractor_id(self) -> str:
        return f"{self.net_id}|authors:truncate,jpeg{self.jpeg_quality},pytorch-fid-input"

    def train(self, mode: bool = True) -> AuthorsFeatures:
        return super().train(False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim == 2:
            return images.float()
        u = jpeg_roundtrip(truncate_to_uint8(images), self.jpeg_quality)
        return self.net(pytorch_fid_input(u)).float()


def authors_extractor(inception_path: str | None = None) -> AuthorsFeatures:
    """AuthorsFeatures around the shipped FID Inception (the same weights as our protocol)."""
    from .inception import InceptionFeatures

    base = InceptionFeatures(inception_path, resize_mode="torch_bilinear")
    return AuthorsFeatures(base.net, base.extractor_id.split("|")[0], base.num_features)


def builtin_real_images(data_cfg) -> tuple[str, torch.Tensor]:
    """(dataset id, uint8 (N, C, H, W)) real images of a built-in dataset at the resolution it was encoded at.

    In a seed-0 random order: the digits are stored sorted by label, so a --num-reference prefix of
    the stored order would hold only the first classes.
    """
    from lct.data.builtin import BUILTIN_DATASETS
    from lct.data.sources import open_source, to_model_input

    name = (data_cfg or {}).get("builtin")
    if not name:
        raise LctError(
            "--protocol authors scores against real images, and the checkpoint's data is not built in; "
            "pass them with --reference-images (lossless files: the protocol JPEG-encodes them once)"
        )
    source, size = open_source(name), BUILTIN_DATASETS[name]["size"]
    images = [source.load(i) for i in np.random.default_rng(0).permutation(len(source))]
    x = np.stack([to_model_input(img, size, img.shape[-1]) for img in images])
    return f"builtin:{name}:real", torch.from_numpy(np.rint((x + 1) * 127.5).astype(np.uint8))
