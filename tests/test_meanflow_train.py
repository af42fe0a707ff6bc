"""MeanFlow end to end (experiment=meanflow): a tiny run trains, checkpoints, samples at 1 and 2 NFE, evaluates
(the in-loop digit scores equal lct.evaluate's), resumes exactly and runs under DDP like the other kinds; the
paper's parts are one override each."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from train_utils import (
    assert_ddp_step_equals_single_process,
    assert_resume_is_exact,
    compose_cfg,
    fit,
    sample_npz,
)

import lct.cli.evaluate as evaluate_cli
from lct.core.coupling import MinibatchOT
from lct.core.meanflow import MeanFlowObjective, kind_times
from lct.core.meanflow_math import MeanFlowNet
from lct.core.metrics import Cauchy, PseudoHuber
from lct.io.checkpoint import load_for_sampling
from lct.nn import NonScalingLayerNorm

MF = ["experiment=meanflow", "data.batch_size=8", "log_every=1"]


@pytest.fixture(scope="module")
def mf_run(tmp_path_factory):
    """A 10-step MeanFlow run on the built-in digits, with the digit callback at 1 and 2 NFE at train end."""
    tmp = tmp_path_factory.mktemp("meanflow")
    cfg = compose_cfg(
        tmp,
        MF
        + [
            "trainer.max_steps=10",
            f"data.root={tmp}/latents",
            "~callbacks.sample_grid",
            "callbacks.digits.num_samples=8",
            "callbacks.digits.batch_size=8",
        ],
        data="mnist",
    )
    module = fit(cfg)
    return module, tmp / "run" / "checkpoints" / "last.ckpt"


def test_meanflow_trains_checkpoints_and_logs_its_scores(mf_run):
    module, ckpt = mf_run
    assert isinstance(module.student, MeanFlowNet) and isinstance(module.objective, MeanFlowObjective)
    assert module.kind == "meanflow" and module.global_step == 10
    assert all(torch.isfinite(p).all() for p in module.parameters())
    assert module.student.backbone.map_extra.weight.abs().sum() > 0  # the t - r embedding trained
    meta = torch.load(ckpt, weights_only=True)["lct"]
    assert meta["kind"] == "meanflow" and meta["config"]["method"]["meanflow"]["ratio"] == 0.25
    assert "metric" not in meta["config"]["method"] and "teacher" not in meta["config"]["method"]
    metrics = module.trainer.callback_metrics
    assert {"digits/fid_1nfe", "digits/fid_2nfe", "train/meanflow_mse", "train/r_neq_t"} <= set(metrics)


def test_meanflow_checkpoint_samples_and_evaluates_at_1_and_2_nfe(mf_run, tmp_path):
    module, ckpt = mf_run
    bundle = load_for_sampling(ckpt)
    assert bundle.kind == "meanflow" and isinstance(bundle.model, MeanFlowNet)
    samples = {}
    for nfe in (1, 2):
        z = sample_npz(ckpt, nfe, tmp_path / f"s{nfe}")
        assert z["images"].shape == (3, 32, 32, 3) and np.isfinite(z["latents"]).all()
        np.testing.assert_allclose(z["sigmas"], kind_times(bundle.noise, nfe, bundle.noise.sigma_mid))
        samples[nfe] = z["latents"]
    assert np.abs(samples[1] - samples[2]).max() > 1e-6  # the second evaluation does something
    report = evaluate_cli.main(
        [str(ckpt), "--metrics", "digit", "--out", str(tmp_path / "eval"), "--num-samples", "8"]
        + ["--batch-size", "8", "--device", "cpu", "--no-progress"]
    )
    assert set(report["digits"]) == {"1nfe", "2nfe"}
    logged = float(module.trainer.callback_metrics["digits/fid_1nfe"])
    assert report["digits"]["1nfe"]["fid"] == pytest.approx(logged, rel=1e-4)  # same seeds, EMA and sampler


def test_meanflow_resume_is_exact(tmp_path):
    assert_resume_is_exact(tmp_path, MF)


@pytest.mark.slow
def test_meanflow_ddp_first_step_equals_single_process(tmp_path):
    assert_ddp_step_equals_single_process(tmp_path, MF)


@pytest.mark.parametrize(
    "override,check",
    [
        ("metric=cauchy", lambda m: isinstance(m.objective.metric, Cauchy) and m.objective.c is not None),
        ("metric=pseudo_huber", lambda m: isinstance(m.objective.metric, PseudoHuber)),
        ("coupling=ot", lambda m: isinstance(m.objective.coupling, MinibatchOT)),
        ("norm=nsln", lambda m: any(isinstance(x, NonScalingLayerNorm) for x in m.student.modules())),
    ],
)
def test_each_part_of_the_paper_is_one_override(tmp_path, override, check):
    module = fit(compose_cfg(tmp_path, MF + ["trainer.max_steps=2", "~callbacks.checkpoint", override]))
    assert check(module) and module.global_step == 2
    assert all(torch.isfinite(p).all() for p in module.student.parameters())


def test_meanflow_trains_a_dit(tmp_path):
    module = fit(compose_cfg(tmp_path, MF + ["trainer.max_steps=2", "~callbacks.checkpoint"], backbone="dit_tiny"))
    assert module.global_step == 2 and module.student.backbone.extra_embedder is not None


def _cli(module: str, *args: str, cwd) -> str:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "OMP_WAIT_POLICY": "PASSIVE"}
    out = subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout + out.stderr


@pytest.mark.slow
def test_the_commands_a_user_types(tmp_path):
    """The issue's check: python -m lct.train experiment=meanflow trainer.max_steps=30, then lct.sample at 1 and 2
    NFE, lct.evaluate --metrics digit, and a resume to 40 steps."""
    run = tmp_path / "run"
    train = ["experiment=meanflow", "data.batch_size=32", f"hydra.run.dir={run}", "trainer.enable_progress_bar=false"]
    _cli("lct.train", *train, "trainer.max_steps=30", cwd=tmp_path)
    ckpt = run / "checkpoints" / "last.ckpt"
    for nfe in ("1", "2"):
        _cli("lct.sample", str(ckpt), "--nfe", nfe, "--num-samples", "4", "--out", str(tmp_path / nfe), cwd=tmp_path)
        assert np.isfinite(np.load(tmp_path / nfe / "samples.npz")["latents"]).all()
    evaluate = [str(ckpt), "--num-samples", "64", "--num-reference", "64", "--metrics", "digit", "--out"]
    _cli("lct.evaluate", *evaluate, str(tmp_path / "eval"), cwd=tmp_path)
    scores = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert "1nfe" in json.dumps(scores) and "2nfe" in json.dumps(scores)
    _cli("lct.train", *train, "trainer.max_steps=40", "resume_changes=allow", cwd=tmp_path)
    assert torch.load(ckpt, weights_only=True)["global_step"] == 40
