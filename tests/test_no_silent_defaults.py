"""Issue 38, item 3: sigma_data, the noise levels and every other method constant come from the run's config or
the checkpoint; a missing one is an error, never the paper's value by default, and an unknown key is refused."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import lightning as L
import pytest
from omegaconf import OmegaConf
from train_utils import compose_cfg

from lct.builders import build_datamodule, instantiate_part
from lct.core import NoiseLevels, edm, losses, precond, sampling
from lct.data.codec import LatentCodec
from lct.data.datamodule import LatentDataModule
from lct.errors import LctError
from lct.eval.callback import SampleGridCallback
from lct.eval.digit_callback import sample_images
from lct.train.synthetic import SyntheticLatentDataModule

SRC = Path(__file__).resolve().parents[1] / "src" / "lct"

# (callable, the parameter that must come from the run): none of them may have a default.
RUN_CONSTANTS = [
    (precond.boundary_scalings, "noise"),
    (precond.ConsistencyFunction, "noise"),
    (edm.edm_scalings, "sigma_data"),
    (edm.Denoiser, "sigma_data"),
    (edm.edm_weight, "sigma_data"),
    (edm.edm_loss, "sigma_data"),
    (edm.heun_sigmas, "sigma_min"),
    (edm.heun_sample, "sigma_max"),
    (edm.preconditioning_gap, "noise"),
    (losses.diffusion_loss, "sigma_data"),
    (losses.lct_loss, "sigma_data"),
    (sampling.multistep_sample, "sigma_min"),
    (sampling.onestep_sample, "sigma_max"),
    (sampling.twostep_sample, "sigma_min"),
    (sample_images, "noise"),
    (LatentCodec, "sigma_data"),
    (LatentCodec.from_root, "sigma_data"),
    (LatentDataModule, "sigma_data"),
    (SyntheticLatentDataModule, "sigma_data"),
]


@pytest.mark.parametrize("fn, name", RUN_CONSTANTS, ids=[f"{f.__qualname__}.{n}" for f, n in RUN_CONSTANTS])
def test_run_constants_have_no_default(fn, name):
    assert inspect.signature(fn).parameters[name].default is inspect.Parameter.empty


def test_no_module_outside_the_noise_levels_falls_back_to_the_papers():
    """PAPER names the paper's levels; only lct.core.noise_levels (and the package's re-export) may use it."""
    users = sorted(
        str(path.relative_to(SRC))
        for path in SRC.rglob("*.py")
        if re.search(r"\bPAPER\b", path.read_text()) and path.name != "noise_levels.py"
    )
    assert users == ["core/__init__.py"]


class NoLevels(L.LightningModule):
    """A module that does not say at which noise levels it samples."""


def test_sampling_callback_refuses_a_module_without_noise_levels():
    cb = SampleGridCallback(every_n_steps=1)
    assert cb.noise is None  # nothing until the run's module says
    with pytest.raises(LctError, match=r"SampleGridCallback .* NoLevels has no `noise_levels`"):
        cb.on_fit_start(None, NoLevels())


def test_sampling_callback_takes_the_runs_levels():
    levels = NoiseLevels(sigma_min=0.01, sigma_max=20.0, rho=7.0, sigma_data=1.0, mid_index=5, mid_grid=11)
    module = NoLevels()
    module.noise_levels = levels
    cb = SampleGridCallback(every_n_steps=1)
    cb._use_run(module)
    assert cb.noise is levels and cb.sigmas(1) == [20.0] and cb.sigma_mid == levels.grid_sigma(5, 11)


@pytest.mark.parametrize("key", ["min", "max", "rho", "data"])
def test_noise_levels_need_every_sigma_key(key):
    sigma = {"min": 0.002, "max": 80.0, "rho": 7.0, "data": 0.5}
    del sigma[key]
    with pytest.raises(LctError, match=rf"^method\.sigma\.{key} is not set"):
        NoiseLevels.from_config(OmegaConf.create(sigma))


def test_synthetic_data_takes_the_runs_sigma_data(tmp_path):
    cfg = compose_cfg(tmp_path, ["method.sigma.data=2.0", "data.num_items=4096"])
    dm = build_datamodule(cfg)
    assert 1.9 < float(dm.data.std()) < 2.1


@pytest.mark.parametrize(
    "override, key", [("+data.foo=1", "data.foo"), ("+data.latent_chanels=3", "data.latent_chanels")]
)
def test_synthetic_data_refuses_an_unknown_key(tmp_path, override, key):
    with pytest.raises(LctError, match=rf"^{re.escape(key)} is not a setting of .*SyntheticLatentDataModule"):
        build_datamodule(compose_cfg(tmp_path, [override]))


def test_synthetic_data_accepts_epochs_for_the_run_length(tmp_path):
    assert build_datamodule(compose_cfg(tmp_path, ["+data.epochs=3"])).epochs == 3


def test_an_unknown_key_of_any_part_is_named():
    node = OmegaConf.create({"_target_": "torch.nn.Linear", "in_features": 2, "out_features": 2, "bais": False})
    with pytest.raises(LctError, match=r"^backbone\.bais is not a setting of torch\.nn\.Linear"):
        instantiate_part(node, "backbone")


def test_probe_of_a_checkpoint_uses_its_own_sigma_max():
    from lct.eval.bundle import check_latent_shape

    seen = []

    def model(x, sigma):
        seen.append(sigma)
        return x

    check_latent_shape(model, (1, 2, 2), sigma_max=12.5)
    assert seen == [12.5]


METHOD_GROUPS = ("metric", "c_schedule", "coupling", "curriculum", "noise_sampler", "teacher", "diffusion")
BUILDER_GIVES = {"dim", "total_steps"}  # lct.builders.build_objective passes the run's D and K


def _method_parts():
    conf = Path(__file__).resolve().parents[1] / "conf"
    return sorted(p for group in METHOD_GROUPS for p in (conf / group).glob("*.yaml"))


@pytest.mark.parametrize("path", _method_parts(), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_method_parts_state_every_constant(path):
    """A method part's YAML gives every argument its class would otherwise take from its own default."""
    from hydra.utils import get_object

    node = OmegaConf.load(path)
    if "_target_" not in node:
        return
    params = inspect.signature(get_object(node._target_)).parameters
    defaulted = {n for n, p in params.items() if p.default is not inspect.Parameter.empty} - BUILDER_GIVES
    assert defaulted <= set(node), f"{path.name} leaves {sorted(defaulted - set(node))} to the class's defaults"
