"""Throughput of evaluation on this machine: 1-NFE sampling (tiny UNet, with/without VAE decoding),
Inception feature extraction, and one FID compute (2048-d eigendecomposition).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_eval.py [--batch 64] [--images 64]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch

from lct.core.noise_levels import PAPER
from lct.core.precond import ConsistencyFunction
from lct.core.sampling import multistep_sample
from lct.eval.inception import InceptionFeatures
from lct.eval.metrics import GenerativeMetrics
from lct.nn import unet_tiny


def timed(fn, repeats: int = 3, warmup: bool = True) -> float:
    """Best wall time of `repeats` calls after one warm-up (the first call pays one-off costs)."""
    if warmup:
        fn()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def builtin_codec():
    """The MNIST codec (project VAE shipped in the package), or None with the reason."""
    try:
        from lct.data import LatentDataModule

        dm = LatentDataModule(
            root=os.path.join(tempfile.gettempdir(), "lct_bench_mnist"),
            batch_size=64,
            builtin="mnist",
            sigma_data=PAPER.sigma_data,
        )
        dm.prepare_data()
        dm.setup("fit")
        return dm.codec, dm.latent_shape
    except Exception as err:  # the data helper may not be ready: measure sampling only
        return None, f"{type(err).__name__}: {err}"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--images", type=int, default=64, help="images for the feature-extraction timing")
    args = p.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, load avg {os.getloadavg()[0]:.1f}")
    codec, shape = builtin_codec()
    if codec is None:
        print(f"no codec ({shape}); decoding not measured")
        shape = (4, 8, 8)
    model = ConsistencyFunction(unet_tiny(in_channels=shape[0], resolution=shape[1]), PAPER).eval()
    noise = torch.randn(args.batch, *shape)
    t = timed(lambda: multistep_sample(model, noise, PAPER.nfe_sigmas(1), PAPER.sigma_min))
    print(f"1-NFE sampling, unet_tiny {tuple(shape)}, batch {args.batch}: {args.batch / t:8.1f} latents/s")
    if codec is not None:
        t = timed(lambda: codec.decode(multistep_sample(model, noise, PAPER.nfe_sigmas(1), PAPER.sigma_min)))
        print(
            f"1-NFE sampling + VAE decode to {codec.image_channels}x{codec.image_size}^2:"
            f"    {args.batch / t:8.1f} images/s"
        )
    ex = InceptionFeatures()
    images = torch.rand(args.images, 1, 32, 32) * 2 - 1
    t = timed(lambda: ex(images), repeats=1)
    print(
        f"Inception features (32x32 grey -> 299, batch {args.images}):   {args.images / t:8.2f} images/s "
        f"({t / args.images:.3f} s/image)"
    )
    m = GenerativeMetrics(extractor=ex)
    feats = torch.randn(4096, 2048).relu()
    m.update_features(feats[:2048], real=True)
    m.update_features(feats[2048:])
    t = timed(lambda: float(m.fid.compute()), repeats=1, warmup=False)  # compute() caches its result
    print(f"FID compute (2048-d, torchmetrics eigvals):             {t:8.2f} s")


if __name__ == "__main__":
    main()
