"""Digit metrics: Fréchet distance closed forms, legibility/coverage, the shipped classifier, the callback in a run."""

import argparse
import json
import logging
import math

import pytest
import torch
from train_utils import compose_cfg

import lct.cli.evaluate as evaluate_cli
from lct.errors import LctError
from lct.eval.digits import (
    DigitScorer,
    classifier_path,
    coverage,
    frechet_distance,
    gaussian_stats,
    legibility,
    legible_balanced,
)
from lct.tools.digit_classifier import mnist_labelled_split


def _random_spd(d, seed):
    a = torch.randn(d, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return a @ a.T / d + 0.1 * torch.eye(d, dtype=torch.float64)


def test_frechet_distance_of_identical_stats_is_zero():
    mu, sigma = torch.randn(6, dtype=torch.float64), _random_spd(6, 0)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-8)


def test_frechet_distance_of_gaussians_matches_the_closed_form():
    # Same covariance, shifted mean: d^2 = ||mu1 - mu2||^2.
    sigma, shift = _random_spd(5, 1), torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0], dtype=torch.float64)
    assert frechet_distance(shift, sigma, torch.zeros(5, dtype=torch.float64), sigma) == pytest.approx(14.25, rel=1e-6)
    # Isotropic covariances a^2 I and b^2 I in d dims: d^2 = ||dmu||^2 + d (a - b)^2.
    eye = torch.eye(4, dtype=torch.float64)
    d2 = frechet_distance(torch.ones(4), 9.0 * eye, torch.zeros(4), 1.0 * eye)
    assert d2 == pytest.approx(4.0 + 4 * (3.0 - 1.0) ** 2, rel=1e-6)


def test_gaussian_stats_are_mean_and_unbiased_covariance():
    x = torch.randn(50, 3, generator=torch.Generator().manual_seed(2))
    mu, sigma = gaussian_stats(x)
    centred = x.double() - x.double().mean(0)
    assert torch.allclose(mu, x.double().mean(0)) and torch.allclose(sigma, centred.T @ centred / 49)


def test_legibility_counts_confident_samples():
    probs = torch.tensor([[0.95] + [0.05 / 9] * 9, [0.9] + [0.1 / 9] * 9, [0.5, 0.5] + [0.0] * 8, [0.1] * 10])
    assert legibility(probs) == pytest.approx(0.5)
    assert legibility(probs, threshold=0.4) == pytest.approx(0.75)


def test_coverage_is_normalised_label_entropy():
    one_hot = torch.eye(10)
    assert coverage(one_hot) == pytest.approx(1.0)  # every digit once
    assert coverage(one_hot[[3] * 7]) == pytest.approx(0.0)  # mode collapse on one digit
    assert coverage(one_hot[[0, 0, 1, 1]]) == pytest.approx(math.log(2) / math.log(10))


def test_a_collapsed_model_cannot_score_well_on_balanced_legibility():
    # Issue 39's step-1 run: every sample the same confident 9 is 100% legible at coverage 0.
    collapsed = torch.eye(10)[[9] * 64] * 0.95 + 0.005
    assert legibility(collapsed) == 1.0 and coverage(collapsed) == pytest.approx(0.0)
    assert legible_balanced(collapsed) == pytest.approx(0.1)  # one digit's even share at most
    even = torch.eye(10)[list(range(10)) * 5] * 0.95 + 0.005
    assert legible_balanced(even) == pytest.approx(1.0)
    two = torch.eye(10)[[0, 1] * 20] * 0.95 + 0.005  # two digits, all legible: two shares of 0.1
    assert legible_balanced(two) == pytest.approx(0.2)
    blurred = even.clone()
    blurred[:25] = 0.1  # half the samples illegible
    assert legible_balanced(blurred) == pytest.approx(legibility(blurred)) == pytest.approx(0.5)


@pytest.fixture(scope="module")
def heldout():
    _, _, images, labels = mnist_labelled_split(500, 0)
    return images[:300], labels[:300]


def test_shipped_classifier_reads_held_out_digits(heldout):
    images, labels = heldout
    scorer = DigitScorer()
    feats, probs = scorer.features_and_probs(images)
    assert feats.shape == (300, 84) and torch.allclose(probs.sum(1), torch.ones(300))
    assert (probs.argmax(1) == labels).float().mean() > 0.95
    provenance = json.loads((classifier_path() / "provenance.json").read_text())
    assert provenance["heldout_accuracy"] > 0.95 and provenance["heldout_vae_reconstruction_accuracy"] > 0.95


def test_real_digits_score_near_the_reference_and_noise_far(heldout):
    scorer = DigitScorer()
    real = scorer.score(heldout[0].split(100))
    noise = scorer.score([torch.rand(300, 1, 32, 32) * 2 - 1])
    assert real["num_samples"] == 300 and real["legible"] > 0.9 and real["coverage"] > 0.95
    assert 0.85 < real["legible_balanced"] <= real["legible"]
    assert noise["fid"] > 10 * real["fid"]
    with pytest.raises(LctError, match="1x32x32"):
        scorer.features_and_probs(torch.zeros(2, 3, 32, 32))


def _run(tmp_path, data, overrides=()):
    from lct.train.run import build

    cfg = compose_cfg(
        tmp_path,
        [
            "trainer.max_steps=3",
            "data.batch_size=8",
            "callbacks.digits.every_n_steps=2",
            "callbacks.digits.num_samples=8",
            "callbacks.digits.batch_size=4",
            "~callbacks.sample_grid",
            "~callbacks.checkpoint",
            *overrides,
        ],
        data=data,
    )
    module, dm, trainer, ckpt = build(cfg)
    trainer.fit(module, datamodule=dm, ckpt_path=ckpt)
    return trainer


def test_callback_logs_digit_metrics_in_a_tiny_mnist_run_and_evaluate_scores_it(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="lct"):
        trainer = _run(tmp_path, "mnist", [f"data.root={tmp_path}/mnist"])
    cb = next(c for c in trainer.callbacks if type(c).__name__ == "DigitMetricCallback")
    assert cb._last_step == 3  # step 2 in the loop, step 3 at the end
    logged = {}
    for nfe in (1, 2):
        keys = ("fid", "legible_balanced", "legible", "coverage")
        logged[nfe] = [float(trainer.callback_metrics[f"digits/{k}_{nfe}nfe"]) for k in keys]
        fid, balanced, legible, cover = logged[nfe]
        assert fid > 0 and 0 <= balanced <= legible <= 1 and 0 <= cover <= 1
    # The console says it too, each pass: the values that went to the loggers.
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("step 3, digit metrics"))
    fid, balanced, legible, cover = logged[1]
    shown = f"1 NFE FID {fid:.1f}, balanced legible {balanced:.0%} (legible {legible:.0%} at coverage {cover:.2f})"
    assert shown in line and "; 2 NFE FID" in line
    # lct.evaluate --metrics digit on the final checkpoint: the same seeds and EMA, the same 1-NFE numbers.
    report = evaluate_cli.main(
        [
            str(tmp_path / "run" / "checkpoints" / "last.ckpt"),
            "--metrics",
            "digit",
            "--out",
            str(tmp_path / "eval"),
            "--num-samples",
            "8",
            "--batch-size",
            "4",
            "--device",
            "cpu",
            "--no-progress",
        ]
    )
    assert report["results"] == {} and set(report["digits"]) == {"1nfe", "2nfe"}
    one = report["digits"]["1nfe"]
    assert [one["fid"], one["legible_balanced"], one["legible"], one["coverage"]] == pytest.approx(logged[1], rel=1e-4)
    row = (tmp_path / "eval" / "results.md").read_text()
    assert f"balanced legible {one['legible_balanced']:.3f} (legible {one['legible']:.3f} at coverage" in row
    # --search under --metrics digit alone sweeps sigma_mid by the digit FID (no Inception needed); the point at
    # the checkpoint's own index reproduces the plain 2-NFE score of the same seeds.
    common = ["--metrics", "digit", "--num-samples", "8", "--batch-size", "4", "--device", "cpu", "--no-progress"]
    own = 430  # method.sigma.mid_index of the run
    found = evaluate_cli.main(
        [str(tmp_path / "run" / "checkpoints" / "last.ckpt"), "--out", str(tmp_path / "s"), "--search"]
        + ["--search-indices", "380", str(own), *common]
    )
    search = json.loads((tmp_path / "s" / "search.json").read_text())
    assert search["metric"] == "digit FID" and [c["index"] for c in search["curve"]] == [380, own]
    assert search["curve"][1]["sigma_mid"] == pytest.approx(report["digits"]["2nfe"]["sigmas"][1])
    assert search["curve"][1]["fid"] == pytest.approx(report["digits"]["2nfe"]["fid"], rel=1e-4)
    assert search["best"]["fid"] == min(c["fid"] for c in search["curve"]) and found["results"] == {}
    assert (tmp_path / "s" / "search.png").stat().st_size > 0


def test_evaluate_metrics_option_parses_and_rejects():
    assert evaluate_cli.metric_list("inception,digit") == ["inception", "digit"]
    with pytest.raises(argparse.ArgumentTypeError, match="inception, digit"):
        evaluate_cli.metric_list("lenet")


def test_callback_is_off_for_other_data(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="lct.eval.digit_callback"):
        trainer = _run(tmp_path, "synthetic")
    assert not any(k.startswith("digits/") for k in trainer.callback_metrics)
    assert "digit metrics off" in caplog.text
