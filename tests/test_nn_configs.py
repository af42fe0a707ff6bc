"""Every conf/backbone yaml instantiates through Hydra with a data stub; norm yamls set the axis.

The registry lct.nn.BACKBONES and the Hydra group conf/backbone/ hold the same names, meaning the same
networks."""

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from lct.builders import instantiate_part
from lct.errors import LctError
from lct.nn import BACKBONES as REGISTRY
from lct.nn import NonScalingLayerNorm, build_backbone
from lct.nn.norms import NORMS as UNET_NORMS
from lct.nn.norms import TOKEN_NORMS

CONF = Path(__file__).resolve().parents[1] / "conf"
BACKBONES = sorted(p.stem for p in (CONF / "backbone").glob("*.yaml"))
NORMS = sorted(p.stem for p in (CONF / "norm").glob("*.yaml"))
SMALL = {"unet_tiny", "dit_tiny"}
BUILD = "lct.nn.build_backbone"
NORM_TYPES = {"layernorm": {torch.nn.LayerNorm}, "rmsnorm": {torch.nn.RMSNorm}, "nsln": {NonScalingLayerNorm}}


def _compose(backbone: str, channels: int, resolution: int, norm: str | None = None):
    cfg = OmegaConf.create(
        {
            "data": {"latent_channels": channels, "latent_resolution": resolution},
            "backbone": OmegaConf.load(CONF / "backbone" / f"{backbone}.yaml"),
        }
    )
    if norm is not None:  # what `norm=<name>` does through `# @package backbone`
        cfg.backbone = OmegaConf.merge(cfg.backbone, OmegaConf.load(CONF / "norm" / f"{norm}.yaml"))
    return cfg


def _count(model):
    return sum(p.numel() for p in model.parameters())


def test_the_configs_exist():
    assert {"unet_paper", "unet_tiny", "dit_tiny", "dit_S_2", "dit_B_2", "dit_L_2", "dit_XL_2"} <= set(BACKBONES)
    assert {"groupnorm", "nsln"} <= set(NORMS)  # EDM's default and the paper's choice (Table 2(d))


def test_one_registry():
    # One name, one network: every registered backbone has its config (named after it), and every config that
    # goes through the registry names a registered backbone; other configs point _target_ at their own factory.
    registered = {n for n in BACKBONES if OmegaConf.load(CONF / "backbone" / f"{n}.yaml")._target_ == BUILD}
    assert set(REGISTRY) <= registered
    for name in registered:
        assert OmegaConf.load(CONF / "backbone" / f"{name}.yaml").name == name


@pytest.mark.parametrize("name", BACKBONES)
def test_backbone_config_instantiates(name):
    cfg = _compose(name, 4, 32)
    if name in SMALL:
        model = instantiate(cfg.backbone)
        x = torch.randn(3, 4, 32, 32)
        assert model(x, torch.zeros(3)).shape == x.shape
    else:
        with torch.device("meta"):  # count only: the big ones take seconds and GBs to build for real
            model = instantiate(cfg.backbone)
    with torch.device("meta"):
        reference = build_backbone(name, in_channels=4, resolution=32)
    assert _count(model) == _count(reference)
    assert [(k, v.shape) for k, v in model.state_dict().items()] == [
        (k, v.shape) for k, v in reference.state_dict().items()
    ]


@pytest.mark.parametrize("norm", NORMS)
def test_norm_configs_reach_the_unet(norm):
    cfg = _compose("unet_tiny", 4, 8, norm)
    assert OmegaConf.to_container(cfg.backbone, resolve=True)["norm"] == norm
    assert instantiate(cfg.backbone)(torch.randn(2, 4, 8, 8), torch.zeros(2)).shape == (2, 4, 8, 8)


@pytest.mark.parametrize("norm", NORMS)
def test_a_norm_option_reaches_the_dit_or_is_one_line_naming_its_norms(norm):
    cfg = _compose("dit_tiny", 4, 8, norm)
    if norm in TOKEN_NORMS:
        model = instantiate(cfg.backbone)
        assert {type(m) for m in model.modules()} & NORM_TYPES[norm]  # the chosen norm is in the network
        assert model(torch.randn(2, 4, 8, 8), torch.zeros(2)).shape == (2, 4, 8, 8)
        return
    with pytest.raises(LctError) as err:
        instantiate_part(cfg.backbone, "backbone")  # how lct.builders builds it: the backbone's own LctError
    message = str(err.value)
    assert "\n" not in message and f"norm={norm!r}" in message and "dit_tiny" in message
    assert ", ".join(TOKEN_NORMS) in message and "norm=null" in message


def test_every_shipped_norm_applies_to_the_unet():
    assert set(NORMS) <= set(UNET_NORMS)


def test_builtin_latent_size_with_paper_unet():
    # The paper UNet also fits the 4x8x8 built-in latent (attention at 8 only); count only.
    with torch.device("meta"):
        model = instantiate(_compose("unet_paper", 4, 8).backbone)
    assert _count(model) > 100_000_000


def test_config_rejects_a_bad_latent_size():
    with pytest.raises(Exception, match="multiple of 4"):
        instantiate(_compose("unet_tiny", 4, 10).backbone)
