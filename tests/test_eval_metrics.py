"""Precision/recall on constructed sets, reference seeding of FID/KID, DDP splitting (stand-in features)."""

import pytest
import torch
from test_eval_helpers import TinyFeatures

from lct.errors import LctError
from lct.eval.metrics import GenerativeMetrics
from lct.eval.precision_recall import PrecisionRecall, knn_radii, precision_recall
from lct.eval.reference import ReferenceStats


def test_identical_sets_have_precision_and_recall_one():
    x = torch.randn(40, 16)
    p, r = precision_recall(x, x.clone())
    assert float(p) == 1.0 and float(r) == 1.0


def test_disjoint_far_sets_have_precision_and_recall_zero():
    x = torch.randn(40, 16)
    p, r = precision_recall(x, x + 100.0)
    assert float(p) == 0.0 and float(r) == 0.0


def test_mode_dropping_lowers_recall_not_precision():
    real = torch.cat([torch.randn(50, 8), torch.randn(50, 8) + 50])  # two far clusters
    fake = torch.randn(50, 8)  # covers only the first
    p, r = precision_recall(real, fake)
    assert float(p) > 0.8 and 0.2 < float(r) <= 0.5


def test_knn_radius_is_kth_neighbour_excluding_self():
    x = torch.tensor([[0.0], [1.0], [3.0], [6.0], [10.0]])
    assert torch.allclose(knn_radii(x, k=3, chunk=2), torch.tensor([6.0, 5.0, 3.0, 5.0, 9.0]))


def test_too_few_points_for_a_knn_radius_name_the_set_and_the_fix():
    four, three = torch.randn(4, 8), torch.randn(3, 8)
    precision_recall(four, four)  # k + 1 = 4 points per set suffice
    for real, fake, named in ((three, four, "the reference images: 3"), (four, three, "the samples: 3")):
        with pytest.raises(LctError, match=named) as err:
            precision_recall(real, fake)
        assert "--metrics digit" in str(err.value)


def test_precision_recall_metric_matches_function():
    real, fake = torch.randn(30, 8), torch.randn(30, 8) + 0.5
    m = PrecisionRecall()
    m.update(real[:10], real=True), m.update(real[10:], real=True), m.update(fake, real=False)
    out = m.compute()
    p, r = precision_recall(real, fake)
    assert out["precision"] == pytest.approx(float(p)) and out["recall"] == pytest.approx(float(r))


def _images(n, seed):
    return torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_seeded_reference_equals_updating_the_real_side():
    ex = TinyFeatures()
    real, fake = _images(24, 0), _images(20, 1)
    direct = GenerativeMetrics(extractor=ex, kid_subset_size=10)
    direct.update(real, real=True)
    direct.update(fake)
    seeded = GenerativeMetrics(extractor=ex, kid_subset_size=10)
    seeded.set_reference(ReferenceStats.from_features(ex(real), {}))
    seeded.update(fake)
    with pytest.warns(UserWarning):
        a, b = direct.compute(), seeded.compute()
    for key in ("fid", "kid", "precision", "recall"):
        assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-5), key
    assert b["num_real"] == 24 and b["extractor"] == "tiny-test-features" and b["resize"] == "none"


def test_reference_split_over_ranks_sums_to_the_whole():
    ex = TinyFeatures()
    ref = ReferenceStats.from_features(ex(_images(10, 0)), {})
    ranks = [GenerativeMetrics(extractor=ex) for _ in range(3)]
    for r, m in enumerate(ranks):
        m.set_reference(ref, r, 3)
    total = sum(m.fid.real_features_sum for m in ranks)
    assert torch.allclose(total, ref.features.double().sum(0), atol=1e-4)
    assert sum(int(m.fid.real_features_num_samples) for m in ranks) == 10
    assert sum(m.kid.real_features[0].shape[0] for m in ranks) == 10


def test_reset_fake_keeps_the_reference():
    ex = TinyFeatures()
    m = GenerativeMetrics(extractor=ex, kid_subset_size=8)
    m.set_reference(ReferenceStats.from_features(ex(_images(12, 0)), {}))
    m.update(_images(12, 1))
    with pytest.warns(UserWarning):
        first = m.compute()
    m.reset_fake()
    m.update(_images(12, 1))
    with pytest.warns(UserWarning, match="biased"):
        again = m.compute()
    assert again["fid"] == pytest.approx(first["fid"], rel=1e-5) and again["num_fake"] == 12
