"""The offline FID Inception wrapper against torchmetrics, scipy and constructed image sets (real weights).

Feature extraction costs 0.1-0.5 s per image on a 2-core CPU, so one module-scoped fixture extracts
48 images once and every test reuses those features.
"""

import numpy as np
import pytest
import torch
from scipy import linalg
from test_eval_helpers import mnist_digits
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from lct.eval.inception import (
    ENV_VAR,
    InceptionFeatures,
    InceptionWeightsNotFound,
    find_inception_weights,
    tf1_bilinear_resize,
    to_uint8,
)
from lct.eval.metrics import GenerativeMetrics
from lct.eval.precision_recall import precision_recall


class Recording(InceptionFeatures):
    """The real wrapper, remembering every feature batch it produced."""

    def forward(self, images):
        out = super().forward(images)
        self.seen = getattr(self, "seen", []) + [out]
        return out


@pytest.fixture(scope="module")
def feats():
    """Features of 32 digits (two halves of 16) and 16 uniform-noise images, via FID's own update()."""
    ex = Recording()
    digits = mnist_digits(32)
    noise = torch.randint(0, 256, (16, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    fid = FrechetInceptionDistance(feature=ex, reset_real_features=False)
    fid.update(digits[:16], real=True)
    fid.update(digits[16:], real=False)
    fid_halves = float(fid.compute())
    noise_feats = ex(noise)
    a, b = ex.seen[0].double(), ex.seen[1].double()
    return {"a": a, "b": b, "noise": noise_feats.double(), "fid_halves": fid_halves, "ex": ex}


def scipy_fid(x: torch.Tensor, y: torch.Tensor) -> float:
    m1, m2 = x.mean(0).numpy(), y.mean(0).numpy()
    s1, s2 = np.cov(x.numpy(), rowvar=False), np.cov(y.numpy(), rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2).real
    return float(((m1 - m2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def test_weights_are_found_in_the_wheel():
    assert find_inception_weights().name == "default_1.pt"


def test_missing_weights_say_how_to_provide_them(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "nope.pt"))
    with pytest.raises(InceptionWeightsNotFound, match="inception-path"):
        find_inception_weights()
    monkeypatch.delenv(ENV_VAR)
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(InceptionWeightsNotFound, match=f"--inception-path.*{ENV_VAR}.*Nothing is downloaded"):
        find_inception_weights()


def test_float_and_grey_inputs_map_like_uint8_rgb():
    u8 = torch.randint(0, 256, (2, 1, 8, 8), dtype=torch.uint8)
    as_float = u8.float() / 127.5 - 1
    assert torch.equal(to_uint8(as_float), u8.expand(-1, 3, -1, -1))
    assert torch.equal(to_uint8(torch.full((1, 3, 2, 2), 7.0))[0, 0], torch.full((2, 2), 255, dtype=torch.uint8))


def test_tf1_resize_has_no_half_pixel_shift():
    x = torch.arange(4.0).view(1, 1, 2, 2)
    y = tf1_bilinear_resize(x, 4)
    assert torch.allclose(y[0, 0, 0], torch.tensor([0.0, 0.5, 1.0, 1.0]))  # src = dst * in/out, edge clamped
    assert torch.allclose(y[0, 0, :, 0], torch.tensor([0.0, 1.0, 2.0, 2.0]))


def test_features_are_pool3(feats):
    assert feats["a"].shape == (16, 2048)
    assert bool((feats["a"] >= 0).all())  # pool3 follows a ReLU
    assert feats["ex"].resize_mode == "tf1_bilinear" and len(feats["ex"].extractor_id.split(":")[1]) == 40


def test_torchmetrics_fid_equals_scipy_frechet(feats):
    assert feats["fid_halves"] == pytest.approx(scipy_fid(feats["a"], feats["b"]), abs=1e-3, rel=1e-5)


def test_fid_of_a_set_against_itself_is_zero(feats):
    fid = FrechetInceptionDistance(feature=feats["ex"])
    fid.update(feats["a"].float(), real=True)
    fid.update(feats["a"].float(), real=False)
    assert abs(float(fid.compute())) < 1e-2


def test_digit_halves_score_far_below_noise(feats):
    m = GenerativeMetrics(extractor=feats["ex"], kid_subset_size=8)
    m.update_features(feats["a"], real=True)
    m.update_features(feats["noise"])
    with pytest.warns(UserWarning, match="from 16 generated samples"):
        noise = m.compute()
    assert feats["fid_halves"] < 0.5 * noise["fid"]
    kid = KernelInceptionDistance(feature=feats["ex"], subset_size=8)
    kid.update(feats["a"].float(), real=True)
    kid.update(feats["b"].float(), real=False)
    assert float(kid.compute()[0]) < noise["kid"]
    _, recall_halves = precision_recall(feats["a"], feats["b"])
    assert noise["precision"] == 0.0 and float(recall_halves) > noise["recall"]
