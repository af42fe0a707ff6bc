"""Sample grids as PNG (no torchvision): one grid per sigma list, side by side."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from .inception import to_uint8


def image_grid(images: torch.Tensor, nrow: int | None = None, pad: int = 2) -> np.ndarray:
    """(B, 1|3, H, W) float in [-1,1] or uint8 -> (rows*H', nrow*W', 3) uint8 array."""
    x = to_uint8(images.cpu())  # (B, 3, H, W)
    b, c, h, w = x.shape
    nrow = nrow or math.ceil(math.sqrt(b))
    ncol_rows = math.ceil(b / nrow)
    out = np.full((ncol_rows * (h + pad) + pad, nrow * (w + pad) + pad, c), 255, np.uint8)
    for i, img in enumerate(x.permute(0, 2, 3, 1).numpy()):  # (H, W, 3) each
        r, col = divmod(i, nrow)
        out[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + col * (w + pad) : pad + col * (w + pad) + w] = img
    return out


def side_by_side(grids: list[np.ndarray], gap: int = 8) -> np.ndarray:
    """Concatenate grids horizontally (e.g. 1 NFE | 2 NFE) with a white gap."""
    h = max(g.shape[0] for g in grids)
    padded = [np.pad(g, ((0, h - g.shape[0]), (0, gap), (0, 0)), constant_values=255) for g in grids]
    return np.concatenate(padded, axis=1)[:, :-gap] if gap else np.concatenate(padded, axis=1)


def save_png(array: np.ndarray, path: str | Path) -> Path:
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path
