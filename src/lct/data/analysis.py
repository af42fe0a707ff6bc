"""Outliers in pixels vs VAE latents of the same images (the paper's Figure 1), behind `python -m lct.analyze`.

Per channel: mean, std, excess kurtosis, and the fraction of values beyond the inner (1.5 IQR) and
outer (3 IQR) Tukey fences, for the pixels, the raw latents z and the normalized x0 the model trains on.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from lct.core.noise_levels import NoiseLevels
from lct.data.shards import LatentShards, load_stats, read_metadata
from lct.data.sources import open_source, to_model_input

log = logging.getLogger(__name__)


def outlier_stats(values: np.ndarray) -> dict:
    """Summary of one channel's values (1-D)."""
    values = np.asarray(values, dtype=np.float64)
    mean, std = values.mean(), values.std()
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    iqr = q3 - q1
    inner = (values < q1 - 1.5 * iqr) | (values > q3 + 1.5 * iqr)
    outer = (values < q1 - 3.0 * iqr) | (values > q3 + 3.0 * iqr)
    kurt = np.mean(((values - mean) / max(std, 1e-300)) ** 4) - 3.0
    # A zero IQR (e.g. MNIST pixels, mostly background) makes every other value "beyond the fences".
    return {
        "mean": mean,
        "std": std,
        "excess_kurtosis": kurt,
        "q1": q1,
        "median": median,
        "q3": q3,
        "min": values.min(),
        "max": values.max(),
        "iqr_is_zero": float(iqr == 0),
        "beyond_inner_fence": inner.mean(),
        "beyond_outer_fence": outer.mean(),
        "max_abs_z": np.abs(values - mean).max() / max(std, 1e-300),
    }


# What a Gaussian gives: fences at Q3 + 1.5 IQR = 2.698 sigma and Q3 + 3 IQR = 4.721 sigma (two-sided).
GAUSSIAN_REFERENCE = {"excess_kurtosis": 0.0, "beyond_inner_fence": 0.006976, "beyond_outer_fence": 2.34e-6}


def per_channel(array: np.ndarray) -> list[dict]:
    """(N, C, H, W) -> one summary per channel, floats rounded for a readable JSON."""
    return [
        {k: round(float(v), 6) for k, v in outlier_stats(array[:, c].ravel()).items()} for c in range(array.shape[1])
    ]


def paired_sample(root: Path, meta: dict, max_items: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixels (N, c, s, s) in [-1, 1] and raw latents z (N, C, h, w) of the same images."""
    shards = LatentShards(root, meta)
    source = open_source(meta["source"]["spec"])
    per_item = 2 if meta["flip"] else 1
    rng = np.random.default_rng(seed)
    if meta.get("n_skipped", 0) == 0 and len(shards) == len(source) * per_item:
        items = np.sort(rng.choice(len(source), min(max_items, len(source)), replace=False))
        latent_index = items * per_item  # the unflipped copy of each image
    else:
        log.warning("%s skipped images: pixels and latents are sampled independently", root)
        items = np.sort(rng.choice(len(source), min(max_items, len(source)), replace=False))
        latent_index = np.sort(rng.choice(len(shards), min(max_items, len(shards)), replace=False))
    size, channels = meta["image"]["size"], meta["image"]["channels"]
    pixels = np.stack([to_model_input(source.load(int(i)), size, channels) for i in items])
    return pixels, shards.gather(latent_index)


def boxplot(groups: dict[str, np.ndarray], path: Path, title: str, max_points: int = 200_000) -> None:
    """One box per channel of each group; whiskers at 1.5 IQR and every point beyond drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(0)
    fig, axes = plt.subplots(1, len(groups), figsize=(4 + 2.2 * len(groups), 3.6), squeeze=False)
    for ax, (name, array) in zip(axes[0], groups.items()):
        data = []
        for c in range(array.shape[1]):
            values = array[:, c].ravel()
            data.append(values if len(values) <= max_points else rng.choice(values, max_points, replace=False))
        ax.boxplot(data, whis=1.5, flierprops={"marker": ".", "markersize": 2, "alpha": 0.3})
        ax.set_xticks(range(1, len(data) + 1), [f"ch{c}" for c in range(len(data))])
        ax.set_title(name, fontsize=10)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def latent_statistics(root: str | Path, out: str | Path, max_items: int, seed: int, command: str) -> dict:
    """Statistics of `max_items` images of the latent root and their latents: latent_statistics.json and
    latent_boxplot.png in `out`."""
    root = Path(root)
    meta = read_metadata(root)
    pixels, z = paired_sample(root, meta, max_items, seed)
    mean, std = load_stats(root, meta)
    x0 = NoiseLevels.sigma_data * (z - mean) / std  # the paper's sigma_data
    result = {
        "command": command,
        "root": str(root),
        "source": meta["source"]["spec"],
        "vae": meta["vae"]["ref"],
        "images": len(pixels),
        "pixel_shape": list(pixels.shape[1:]),
        "latent_shape": list(z.shape[1:]),
        "gaussian_reference": GAUSSIAN_REFERENCE,
        "pixels": per_channel(pixels),
        "latents_z": per_channel(z),
        "latents_x0": per_channel(x0),
    }
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "latent_statistics.json").write_text(json.dumps(result, indent=2) + "\n")
    boxplot(
        {"pixels [-1, 1]": pixels, "latents z": z, "normalized x0 = sigma_data (z-mu)/s": x0},
        out / "latent_boxplot.png",
        f"{meta['source']['spec']}, {len(pixels)} images, VAE {meta['vae']['ref']}",
    )
    for name in ("pixels", "latents_z", "latents_x0"):
        kurt = [c["excess_kurtosis"] for c in result[name]]
        outer = [c["beyond_outer_fence"] for c in result[name]]
        log.info("%-10s excess kurtosis %s  beyond outer fence %s", name, np.round(kurt, 2), np.round(outer, 4))
    return result
