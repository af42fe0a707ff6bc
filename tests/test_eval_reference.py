"""Reference statistics cache: reuse when the provenance matches, recompute or refuse when it does not."""

import pytest
import torch
from test_eval_helpers import TinyFeatures

from lct.eval.reference import (
    StaleReferenceError,
    load_or_compute_reference,
    load_reference,
    make_provenance,
    provenance_mismatch,
)


class Counter:
    def __init__(self, n=6):
        self.calls, self.n = 0, n

    def __call__(self):
        self.calls += 1
        return torch.randn(self.n, 64)


def test_cache_is_reused_when_provenance_matches(tmp_path):
    path, prov, compute = tmp_path / "ref.pt", make_provenance("mnist", 6, TinyFeatures(), "images"), Counter()
    first = load_or_compute_reference(path, prov, compute)
    second = load_or_compute_reference(path, prov, compute)
    assert compute.calls == 1 and torch.equal(first.features, second.features)
    assert torch.allclose(second.mu, first.features.double().mean(0))
    assert torch.allclose(second.sigma, torch.cov(first.features.double().T))
    assert load_reference(path).provenance["count"] == 6


@pytest.mark.parametrize(
    "change",
    [
        {"dataset": "celeba"},
        {"requested": 7},
        {"extractor": "other:abc"},
        {"resize": "torch_bilinear"},
        {"source": "decoded_latents"},
    ],
)
def test_stale_cache_is_recomputed_or_refused(tmp_path, change):
    path, prov = tmp_path / "ref.pt", make_provenance("mnist", 6, TinyFeatures(), "images")
    load_or_compute_reference(path, prov, Counter())
    changed, compute = {**prov, **change}, Counter()
    key = next(iter(change))
    with pytest.raises(StaleReferenceError, match=key):
        load_or_compute_reference(path, changed, compute, on_mismatch="error")
    ref = load_or_compute_reference(path, changed, compute)
    assert compute.calls == 1 and provenance_mismatch(ref.provenance, changed) == []
    assert provenance_mismatch(load_reference(path).provenance, changed) == []


def test_smaller_dataset_than_requested_is_not_stale(tmp_path):
    path, prov, compute = tmp_path / "ref.pt", make_provenance("tiny", 100, TinyFeatures(), "images"), Counter(5)
    load_or_compute_reference(path, prov, compute)
    ref = load_or_compute_reference(path, prov, compute)
    assert compute.calls == 1 and ref.count == 5
