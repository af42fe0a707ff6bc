"""One protocol for the headline number: a built-in checkpoint is scored against the built-in's real images, the
first --num-reference of the same seed-0 permutation that every published built-in FID used (experiments/ablation)."""

from types import SimpleNamespace

import numpy as np

from lct.data.sources import load_mnist
from lct.eval import run as eval_run
from lct.eval.protocol import builtin_real_images


def test_the_builtin_reference_is_the_studys_fixed_1000_digits():
    name, real = builtin_real_images({"builtin": "mnist"})
    images, labels = load_mnist()
    order = np.random.default_rng(0).permutation(len(images))  # how experiments/ablation/sweeps.sh builds its file
    assert name == "builtin:mnist:real" and real.dtype.is_floating_point is False
    np.testing.assert_array_equal(real[:1000].numpy(), images[order[:1000]][:, None])
    assert np.bincount(labels[order[:1000]], minlength=10).min() >= 80  # every digit class is in the first 1,000


def test_evaluate_scores_a_builtin_checkpoint_against_real_digits_not_decoded_latents(tmp_path, monkeypatch):
    seen = {}

    def extract(extractor, batches, num, progress, device):
        seen["images"] = np.concatenate([b.numpy() for b in batches])[:num]
        return None

    monkeypatch.setattr(eval_run, "extract_features", extract)
    monkeypatch.setattr(
        eval_run, "load_or_compute_reference", lambda path, expected, compute, on: (compute(), expected)
    )
    args = SimpleNamespace(protocol="ours", reference=None, out=str(tmp_path), reference_images=None, batch_size=250,
                           num_reference=1000, no_progress=True, device="cpu", on_stale="recompute")  # fmt: skip
    bundle = SimpleNamespace(cfg={"data": {"builtin": "mnist", "root": "unused"}})
    metrics = SimpleNamespace(extractor=SimpleNamespace(extractor_id="x", resize_mode="none"))
    _, provenance = eval_run.build_reference(args, bundle, metrics)
    assert provenance["dataset"] == "builtin:mnist:real" and provenance["source"] == "images"
    images, _ = load_mnist()
    np.testing.assert_array_equal(seen["images"], images[np.random.default_rng(0).permutation(5000)[:1000]][:, None])
