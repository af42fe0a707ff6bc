"""python -m lct.sample / lct.evaluate on a tiny checkpoint (stand-in features keep it fast)."""

import functools
import json

import numpy as np
import pytest
from test_eval_helpers import TinyFeatures, fake_checkpoint, install_fake_loader, tiny_bundle

import lct.cli.evaluate as evaluate_cli
import lct.cli.sample as sample_cli
import lct.eval.run as eval_run
from lct.eval.bundle import CheckpointMismatch, check_latent_shape
from lct.eval.metrics import GenerativeMetrics


@pytest.fixture
def ckpt(tmp_path, monkeypatch):
    install_fake_loader(monkeypatch)
    return fake_checkpoint(tmp_path)


def test_sample_writes_pngs_npz_and_grid(ckpt, tmp_path):
    out = sample_cli.main(
        [
            str(ckpt),
            "--num-samples",
            "5",
            "--nfe",
            "2",
            "--batch-size",
            "2",
            "--seed",
            "7",
            "--out",
            str(tmp_path / "s"),
            "--device",
            "cpu",
        ]
    )
    z = np.load(out / "samples.npz")
    assert z["images"].shape == (5, 16, 16, 3) and z["images"].dtype == np.uint8
    assert list(z["seeds"]) == [7, 8, 9, 10, 11] and len(z["sigmas"]) == 2
    assert sorted(p.name for p in (out / "png").iterdir())[0] == "000007.png" and (out / "grid.png").is_file()
    same = sample_cli.main(
        [
            str(ckpt),
            "--num-samples",
            "5",
            "--nfe",
            "2",
            "--batch-size",
            "2",
            "--seed",
            "7",
            "--out",
            str(tmp_path / "t"),
            "--device",
            "cpu",
            "--no-png",
        ]
    )
    assert np.array_equal(np.load(same / "samples.npz")["latents"], z["latents"])


def test_one_nfe_samples_depend_only_on_their_seed(ckpt, tmp_path):
    run = lambda seed, n, bs: np.load(
        sample_cli.main(  # noqa: E731
            [
                str(ckpt),
                "--num-samples",
                str(n),
                "--batch-size",
                str(bs),
                "--seed",
                str(seed),
                "--out",
                str(tmp_path / f"{seed}_{bs}"),
                "--device",
                "cpu",
                "--no-png",
            ]
        )
        / "samples.npz"
    )["latents"]
    assert np.allclose(run(7, 4, 3)[1:3], run(8, 2, 1), atol=1e-6)


def test_sample_accepts_an_explicit_sigma_list(ckpt, tmp_path):
    out = sample_cli.main(
        [
            str(ckpt),
            "--num-samples",
            "2",
            "--sigmas",
            "80",
            "2.0",
            "0.5",
            "--out",
            str(tmp_path / "s"),
            "--device",
            "cpu",
            "--no-png",
        ]
    )
    assert list(np.load(out / "samples.npz")["sigmas"]) == [80.0, 2.0, 0.5]


def test_evaluate_reports_both_nfe_searches_and_resumes(ckpt, tmp_path, monkeypatch):
    monkeypatch.setattr(eval_run, "GenerativeMetrics", functools.partial(GenerativeMetrics, extractor=TinyFeatures()))
    real = np.random.default_rng(0).integers(0, 256, (12, 16, 16, 3), dtype=np.uint8)
    np.savez(tmp_path / "real.npz", images=real)
    argv = [
        str(ckpt),
        "--out",
        str(tmp_path / "e"),
        "--num-samples",
        "10",
        "--batch-size",
        "4",
        "--chunk-size",
        "4",
        "--reference-images",
        str(tmp_path / "real.npz"),
        "--kid-subset-size",
        "5",
        "--device",
        "cpu",
        "--search",
        "--search-indices",
        "420",
        "440",
        "--search-num-samples",
        "8",
        "--no-progress",
    ]
    with pytest.warns(UserWarning, match="biased"):
        report = evaluate_cli.main(argv)
    res = report["results"]
    assert set(res) == {"1nfe", "2nfe"} and res["1nfe"]["num_fake"] == 10 and res["2nfe"]["sigmas"][0] == 80.0
    assert {"fid", "kid", "precision", "recall", "extractor", "resize"} <= set(res["1nfe"])
    search = json.loads((tmp_path / "e" / "search.json").read_text())
    assert [c["index"] for c in search["curve"]] == [420, 440] and (tmp_path / "e" / "search.png").is_file()
    assert search["best"]["fid"] == min(c["fid"] for c in search["curve"])
    assert (tmp_path / "e" / "results.md").read_text().startswith("| tiny.ckpt | 10 |")
    # rerun: every feature chunk and the reference come from disk, nothing is sampled again
    monkeypatch.setattr("lct.core.sampling.multistep_sample", lambda *a, **k: pytest.fail("resumed run sampled"))
    with pytest.warns(UserWarning):
        again = evaluate_cli.main(argv)
    assert again["results"]["1nfe"]["fid"] == pytest.approx(res["1nfe"]["fid"])


def test_checkpoint_for_another_latent_shape_is_named():
    b = tiny_bundle(codec_shape=(4, 8, 8))
    with pytest.raises(CheckpointMismatch, match=r"\(4, 4, 4\).*\(4, 8, 8\)"):
        check_latent_shape(b.model, b.latent_shape, b.codec, sigma_max=b.noise.sigma_max)


def test_checkpoint_from_another_backbone_is_named():
    b = tiny_bundle(channels=3)  # a 3-channel backbone asked to make 4-channel latents
    with pytest.raises(CheckpointMismatch, match=r"TinyBackbone.*\(4, 4, 4\)"):
        check_latent_shape(b.model, b.latent_shape, b.codec, sigma_max=b.noise.sigma_max)


def test_cli_loads_refuse_a_mismatched_checkpoint(tmp_path, monkeypatch):
    install_fake_loader(monkeypatch, lambda: tiny_bundle(codec_shape=(4, 8, 8)))
    with pytest.raises(CheckpointMismatch):
        sample_cli.main([str(fake_checkpoint(tmp_path)), "--out", str(tmp_path / "s"), "--device", "cpu"])


def test_evaluate_adds_its_scores_to_the_runs_record(ckpt, tmp_path, monkeypatch):
    from lct.io import records

    monkeypatch.setattr(eval_run, "GenerativeMetrics", functools.partial(GenerativeMetrics, extractor=TinyFeatures()))
    np.savez(tmp_path / "real.npz", images=np.random.default_rng(0).integers(0, 256, (12, 16, 16, 3), dtype=np.uint8))
    records.write_record(ckpt.parent, {"schema": records.SCHEMA_VERSION, "status": "finished", "eval": {}})
    argv = [str(ckpt), "--out", str(tmp_path / "e"), "--num-samples", "10", "--batch-size", "4", "--chunk-size", "4"]
    argv += ["--reference-images", str(tmp_path / "real.npz"), "--kid-subset-size", "5", "--device", "cpu"]
    with pytest.warns(UserWarning, match="biased"):
        report = evaluate_cli.main([*argv, "--nfe", "1", "--no-progress"])
    scores = records.load_record(ckpt.parent)["eval"]["inception_10"]
    assert scores["fid_1nfe"] == pytest.approx(report["results"]["1nfe"]["fid"]) and scores["num_samples"] == 10
    assert records.load_record(ckpt.parent)["status"] == "finished"  # the rest of the record is kept
