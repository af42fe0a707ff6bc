"""Checkpoints: self-sufficient (the path alone samples and decodes) and safe (weights_only, one-line errors)."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from train_utils import compose_cfg, fit, sample_npz

import lct.cli.sample as sample_cli
from lct.core import NoiseLevels
from lct.errors import LctError
from lct.io.checkpoint import _read, load_for_sampling


def test_trained_checkpoint_samples_and_decodes_through_the_public_loader(tmp_path):
    cfg = compose_cfg(
        tmp_path,
        [
            "experiment=slct",
            "trainer.max_steps=2",
            "data.batch_size=16",
            f"data.root={tmp_path}/latents",
            "~callbacks.sample_grid",
        ],
        data="mnist",
    )
    fit(cfg)
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    meta = torch.load(ckpt, weights_only=True)["lct"]
    assert NoiseLevels.from_state_dict(meta["noise_levels"]) == NoiseLevels()
    assert set(meta["weights"]) == {"student", "ema_0_999"} and meta["codec"]["mean"].shape == (4, 8, 8)
    shutil.rmtree(tmp_path / "latents")  # the checkpoint alone must suffice
    bundle = load_for_sampling(ckpt)
    assert bundle.weights == "ema_0_999" and bundle.latent_shape == (4, 8, 8)
    for nfe in (1, 2):
        z = sample_npz(ckpt, nfe, tmp_path / f"s{nfe}")
        assert z["images"].shape == (3, 32, 32, 3) and z["images"].dtype == np.uint8
        assert list(z["sigmas"]) == pytest.approx(NoiseLevels().nfe_sigmas(nfe))
        assert np.isfinite(z["latents"]).all() and z["images"].std() > 0


def test_sampling_picks_the_ema_decay_or_the_student(tmp_path):
    cfg = compose_cfg(
        tmp_path,
        ["experiment=ilct", "trainer.max_steps=3", "data.batch_size=16", "ema.decays=[0.999,0.5]", "ema.warmup=false"],
        data="mnist",
    )
    fit(cfg)
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert load_for_sampling(ckpt).weights == "ema_0_999"
    latents = {
        name: sample_npz(ckpt, 1, tmp_path / name, extra=flags)["latents"]
        for name, flags in [("first", []), ("half", ["--ema-decay", "0.5"]), ("online", ["--no-ema"])]
    }
    assert not np.allclose(latents["first"], latents["half"]) and not np.allclose(latents["half"], latents["online"])
    with pytest.raises(LctError, match="no ema_0_9 weights"):
        sample_npz(ckpt, 1, tmp_path / "x", extra=["--ema-decay", "0.9"])
    with pytest.raises(LctError, match="--no-ema and --ema-decay"):
        sample_npz(ckpt, 1, tmp_path / "x", extra=["--ema-decay", "0.5", "--no-ema"])


class _Evil:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def test_a_checkpoint_that_would_run_code_is_refused_and_has_no_effect(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    torch.save({"lct": {"x": _Evil(str(marker))}, "state_dict": {}}, path)
    with pytest.raises(LctError, match="evil.ckpt") as err:
        _read(path)
    assert "\n" not in str(err.value) and not marker.exists()
    with pytest.raises(LctError, match="was not loaded"):  # through the sampling CLI too
        sample_cli.main([str(path), "--out", str(tmp_path / "s"), "--device", "cpu"])
    assert not marker.exists()


def test_truncated_or_foreign_files_name_the_file(tmp_path):
    good = tmp_path / "good.ckpt"
    torch.save({"lct": {}, "state_dict": {"a": torch.ones(3)}}, good)
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(good.read_bytes()[:100])
    text = tmp_path / "notes.ckpt"
    text.write_text("hello")
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"weights": torch.ones(2)}, foreign)
    for path in (cut, text, foreign, tmp_path / "missing.ckpt"):
        with pytest.raises(LctError, match=path.name) as err:
            _read(path)
        assert "\n" not in str(err.value)


def test_the_run_config_and_the_library_defaults_agree_on_the_noise_levels():
    from omegaconf import OmegaConf

    conf = OmegaConf.load(Path(__file__).resolve().parents[1] / "conf" / "config.yaml")
    assert NoiseLevels.from_config(conf.method.sigma) == NoiseLevels()
    assert 0.44 < NoiseLevels().sigma_mid < 0.45  # index 430 of the 641-point grid
    assert NoiseLevels.from_config({**conf.method.sigma, "data": 1.0}).sigma_data == 1.0
