"""data=folder: a user's own image folder -> `lct.encode` -> `lct.train data=folder data.root=ROOT` with no
other override -> a checkpoint that samples and decodes (README "Train on your own images")."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from train_utils import compose_cfg, fit

from lct.builders import build_datamodule
from lct.cli.encode import main as encode_main
from lct.core.sampling import multistep_sample
from lct.data.builtin import MARKER
from lct.errors import LctError
from lct.io.checkpoint import load_for_sampling

os.environ.setdefault("HF_HUB_OFFLINE", "1")
SRC = str(Path(__file__).resolve().parents[1] / "src")
# The test's only overrides beyond data.root are run length and batch; no shape, mu, s or VAE is given.
TINY = ["trainer.max_steps=3", "data.batch_size=8", "callbacks.sample_grid=null", "callbacks.digits=null"]


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """40 grayscale 32x32 PNGs of random rectangles and ellipses."""
    folder = tmp_path_factory.mktemp("my_images")
    rng = np.random.default_rng(0)
    for i in range(40):
        im = Image.new("L", (32, 32), 0)
        draw = ImageDraw.Draw(im)
        x0, y0 = rng.integers(2, 14, size=2)
        x1, y1 = rng.integers(18, 30, size=2)
        (draw.ellipse if i % 2 else draw.rectangle)(
            [int(x0), int(y0), int(x1), int(y1)], fill=int(rng.integers(128, 256))
        )
        im.save(folder / f"{i:03d}.png")
    return folder


@pytest.fixture(scope="module")
def root(images, tmp_path_factory):
    """The folder encoded by the CLI's main with the shipped MNIST VAE (1x32x32 -> 4x8x8)."""
    out = tmp_path_factory.mktemp("latents") / "mine"
    meta = encode_main(
        [
            "--source",
            str(images),
            "--vae",
            "builtin:mnist",
            "--size",
            "32",
            "--out",
            str(out),
            "--device",
            "cpu",
            "--workers",
            "1",
            "--posterior",
            "mean",
        ]
    )
    assert meta["complete"] and meta["count"] == 40 and meta["latent"]["shape"] == [4, 8, 8]
    return out


def test_folder_trains_samples_and_decodes(tmp_path, root):
    files_before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    cfg = compose_cfg(tmp_path, [f"data.root={root}", *TINY], data="folder")
    assert cfg.data.latent_channels is None and cfg.data.builtin is None
    module = fit(cfg)
    assert module.global_step == 3
    # The shape came from the root's metadata and reached the backbone and the stored run config.
    assert (cfg.data.latent_channels, cfg.data.latent_resolution) == (4, 8)
    assert cfg.backbone.in_channels == 4
    # lct only read the user's root: nothing rebuilt, nothing marked as a built-in.
    assert not (root / MARKER).exists()
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == files_before

    bundle = load_for_sampling(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert bundle.latent_shape == (4, 8, 8)
    # The checkpoint's codec carries the root's mu and s.
    np.testing.assert_array_equal(bundle.codec.mean.cpu().numpy().reshape(4, 8, 8), np.load(root / "mean.npy"))
    np.testing.assert_array_equal(bundle.codec.std.cpu().numpy().reshape(4, 8, 8), np.load(root / "std.npy"))
    noise = torch.randn(4, *bundle.latent_shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        x0 = multistep_sample(bundle.model, noise, bundle.noise.nfe_sigmas(1), bundle.noise.sigma_min)
        decoded = bundle.codec.decode(x0)
    assert decoded.shape == (4, 1, 32, 32)
    assert torch.isfinite(decoded).all() and decoded.min() >= -1 and decoded.max() <= 1


def test_missing_root_is_one_line_naming_the_key_and_encode(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "LCT_DEBUG")}
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run(
        [sys.executable, "-m", "lct.train", "data=folder", f"hydra.run.dir={tmp_path}/run"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert out.returncode == 2, out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    lines = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "data.root" in lines[0] and "python -m lct.encode" in lines[0]
    assert not (tmp_path / "run" / "config_resolved.yaml").exists()  # refused before lct writes the run


@pytest.mark.parametrize("where", ["missing", "image_folder", "empty"])
def test_root_without_latents_names_the_encode_command(tmp_path, images, where):
    root = {"missing": tmp_path / "nowhere", "image_folder": images, "empty": tmp_path / "empty"}[where]
    if where == "empty":
        root.mkdir()
    with pytest.raises(LctError, match=r"no latents at .*python -m lct\.encode"):
        build_datamodule(compose_cfg(tmp_path, [f"data.root={root}", *TINY], data="folder"))
    assert sorted(p.name for p in images.iterdir())[:1] == ["000.png"] and not (images / MARKER).exists()


def test_explicit_shape_that_disagrees_names_both(tmp_path, root):
    cfg = compose_cfg(tmp_path, [f"data.root={root}", "data.latent_channels=3", *TINY], data="folder")
    with pytest.raises(LctError, match=r"latent_channels=3.*\[4, 8, 8\]"):
        build_datamodule(cfg)
    # A value that agrees is accepted as is.
    cfg = compose_cfg(tmp_path, [f"data.root={root}", "data.latent_resolution=8", *TINY], data="folder")
    assert build_datamodule(cfg).latent_shape == (4, 8, 8) and cfg.data.latent_channels == 4
