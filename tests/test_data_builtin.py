"""The offline built-in: shipped project VAE + MNIST 5k -> cached latents, and the data configs."""

import json
import os
import time
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from lct.core import PAPER
from lct.data import LatentCodec, LatentDataError, LatentDataModule
from lct.data.vae import builtin_vae_path
from lct.tools.autoencoder import mnist_split, psnr

os.environ.setdefault("HF_HUB_OFFLINE", "1")
CONF = Path(__file__).resolve().parents[1] / "conf" / "data"
# The shipped VAE reaches ~28 dB on held-out digits (assets/vae_mnist/provenance.json); 24 dB leaves
# room for posterior-sample noise and platform differences while still catching a broken codec.
PSNR_FLOOR_DB = 24.0


@pytest.fixture(scope="module")
def mnist_dm(tmp_path_factory):
    root = tmp_path_factory.mktemp("data") / "mnist"
    dm = LatentDataModule(
        sigma_data=PAPER.sigma_data,
        root=str(root),
        batch_size=128,
        builtin="mnist",
        latent_channels=4,
        latent_resolution=8,
    )
    dm.prepare_data()
    dm.setup("fit")
    return dm


def test_shipped_vae_has_provenance():
    path = builtin_vae_path("mnist")
    provenance = json.loads((path / "provenance.json").read_text())
    assert provenance["command"].startswith("python -m lct.autoencoder")
    assert (path / "diffusion_pytorch_model.safetensors").stat().st_size < 5e6


def test_builtin_mnist_batches(mnist_dm):
    batch = next(iter(mnist_dm.train_dataloader()))
    assert batch.shape == (128, 4, 8, 8) and batch.dtype == torch.float32
    assert mnist_dm.train_dataloader().sampler.steps_per_epoch == 5000 // 128
    images = mnist_dm.codec.decode(batch[:8])
    assert images.shape == (8, 1, 32, 32) and images.min() >= -1 and images.max() <= 1


def test_builtin_cache_is_reused(mnist_dm):
    start = time.time()
    mnist_dm.prepare_data()
    assert time.time() - start < 15  # no re-encode: only metadata and the shipped VAE are read
    assert json.loads((mnist_dm.root / "metadata.json").read_text())["count"] == 5000
    assert (mnist_dm.root / ".lct-builtin.json").is_file()  # marks the root as lct's to rebuild


def test_round_trip_psnr_above_floor(mnist_dm):
    _, heldout = mnist_split(holdout=500, seed=0)
    codec = LatentCodec.from_root(mnist_dm.root, sigma_data=PAPER.sigma_data)
    recon = codec.decode(codec.encode(heldout[:200]))
    assert psnr(recon, heldout[:200]).mean() > PSNR_FLOOR_DB


def _data_config(name, root):
    cfg = OmegaConf.create({"seed": 3, "data": OmegaConf.load(CONF / f"{name}.yaml")})
    cfg.data.root = str(root)
    return cfg


@pytest.mark.parametrize("name", ["mnist", "celebahq256", "ffhq256", "church256"])
def test_data_configs_have_the_contract_keys(name, tmp_path):
    cfg = _data_config(name, tmp_path / name)
    for key in ("_target_", "root", "batch_size", "latent_channels", "latent_resolution", "epochs"):
        assert key in cfg.data, key
    dm = instantiate(cfg.data, sigma_data=PAPER.sigma_data)  # the run's, as lct.builders.build_datamodule passes it
    assert isinstance(dm, LatentDataModule) and dm.seed == 3
    if name != "mnist":
        assert cfg.data.latent_resolution == 32 and cfg.data.epochs in (1400, 1800)
        with pytest.raises(LatentDataError, match="python -m lct.encode"):
            dm.prepare_data()


def test_mnist_config_instantiates_and_streams(mnist_dm):
    cfg = _data_config("mnist", mnist_dm.root)
    dm = instantiate(cfg.data, sigma_data=PAPER.sigma_data)  # the run's, as lct.builders.build_datamodule passes it
    dm.prepare_data()
    dm.setup("fit")
    assert next(iter(dm.train_dataloader())).shape == (128, 4, 8, 8)
