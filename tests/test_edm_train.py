"""The EDM baseline as one more objective (experiment=edm): training, checkpoints, sampling at odd NFE,
resume and DDP as for consistency training; and consistency training initialised from it (init_from)."""

import numpy as np
import pytest
import torch
from test_eval_helpers import tiny_bundle
from train_utils import (
    assert_ddp_step_equals_single_process,
    assert_resume_is_exact,
    compose_cfg,
    fit,
    sample_npz,
)

import lct.cli.evaluate as evaluate_cli
import lct.cli.sample as sample_cli
import lct.train.run as run
from lct.core import PAPER, ConsistencyFunction, Denoiser
from lct.core.edm import heun_sigmas
from lct.errors import LctError
from lct.io.checkpoint import load_for_sampling
from lct.train.validate import validate_config

EDM = ["experiment=edm", "data.batch_size=8", "log_every=1"]


@pytest.fixture(scope="module")
def edm_run(tmp_path_factory):
    """A 3-step EDM run on the built-in digits, with the digit callback at 1 and 3 NFE at train end."""
    tmp = tmp_path_factory.mktemp("edm")
    cfg = compose_cfg(
        tmp,
        EDM
        + [
            "trainer.max_steps=3",
            f"data.root={tmp}/latents",
            "~callbacks.sample_grid",
            "callbacks.digits.num_samples=8",
            "callbacks.digits.batch_size=8",
            "callbacks.digits.nfe=[1,3]",
        ],
        data="mnist",
    )
    module = fit(cfg)
    return module, tmp / "run" / "checkpoints" / "last.ckpt"


def test_edm_trains_the_denoiser_and_logs_the_nfe_it_spends(edm_run):
    module, ckpt = edm_run
    assert isinstance(module.student, Denoiser) and module.kind == "diffusion" and module.global_step == 3
    assert all(torch.isfinite(p).all() for p in module.parameters())
    meta = torch.load(ckpt, weights_only=True)["lct"]
    assert meta["kind"] == "diffusion" and meta["config"]["method"]["kind"] == "diffusion"
    assert "metric" not in meta["config"]["method"]  # no consistency parts in an EDM run's config
    metrics = module.trainer.callback_metrics
    assert {"digits/fid_1nfe", "digits/fid_3nfe"} <= set(metrics) and "digits/fid_2nfe" not in metrics


def test_edm_checkpoint_samples_with_heun_at_odd_nfe(edm_run, tmp_path):
    _, ckpt = edm_run
    bundle = load_for_sampling(ckpt)
    assert bundle.kind == "diffusion" and isinstance(bundle.model, Denoiser) and bundle.weights == "ema_0_999"
    for nfe, steps in ((1, 1), (3, 2)):
        z = sample_npz(ckpt, nfe, tmp_path / f"s{nfe}")
        assert z["images"].shape == (3, 32, 32, 3) and np.isfinite(z["latents"]).all()
        grid = heun_sigmas(steps, PAPER.sigma_min, PAPER.sigma_max, PAPER.rho)  # t_0 = 80, ..., t_N = 0
        np.testing.assert_array_equal(z["sigmas"], grid.numpy())


def test_even_nfe_is_refused_in_one_line(edm_run, tmp_path):
    _, ckpt = edm_run
    for cli, argv in ((sample_cli, ["--nfe", "2"]), (evaluate_cli, ["--nfe", "1", "4", "--metrics", "digit"])):
        with pytest.raises(LctError, match="odd number") as err:
            cli.main([str(ckpt), "--device", "cpu", "--out", str(tmp_path / "x"), "--num-samples", "2", *argv])
        assert "\n" not in str(err.value)
    with pytest.raises(LctError, match="nfe must be 1 or 2"):  # a consistency model keeps 1 and 2
        tiny_bundle().nfe_sigmas(3)
    cfg = compose_cfg(tmp_path, EDM + ["trainer.max_steps=1", "callbacks.sample_grid.nfe=[2]"])
    with pytest.raises(LctError, match="odd number"):  # in-loop callbacks: at fit start
        fit(cfg)


def test_edm_resume_is_exact(tmp_path):
    assert_resume_is_exact(tmp_path, EDM)


def test_edm_ddp_first_step_equals_single_process(tmp_path):
    assert_ddp_step_equals_single_process(tmp_path, EDM)


def test_init_from_starts_the_student_at_the_edm_ema_and_is_not_reapplied_on_resume(edm_run, tmp_path, monkeypatch):
    _, edm_ckpt = edm_run
    source = torch.load(edm_ckpt, weights_only=True)["state_dict"]
    common = ["experiment=cauchy_ot", "data.batch_size=8", f"init_from={edm_ckpt}"]
    module, dm, trainer, ckpt = run.build(compose_cfg(tmp_path, common + ["trainer.max_steps=2"]))
    assert ckpt is None and isinstance(module.student, ConsistencyFunction)
    # Before the first optimizer step: student, its EMA and the stop-grad target all start at the EDM EMA.
    for net in (module.student, module.emas["0_999"]):
        for k, v in net.state_dict().items():
            assert torch.equal(v, source[f"emas.0_999.{k}"]), k
    assert any(not torch.equal(v, source[f"student.{k}"]) for k, v in module.student.state_dict().items())
    assert module.init_from["path"] == str(edm_ckpt.resolve()) and module.init_from["weights"] == "ema_0_999"
    assert 0 < module.init_from["gap_c_out"] <= 0.0021
    trainer.fit(module, datamodule=dm)
    meta = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)["lct"]
    assert meta["init_from"]["path"] == str(edm_ckpt.resolve()) and meta["config"]["init_from"] == str(edm_ckpt)
    # Resume (ckpt_path=auto finds last.ckpt): the run's own weights win, init_from is not read again.
    monkeypatch.setattr(run, "init_from_edm", lambda *a: pytest.fail("init_from re-applied on resume"))
    # (a longer run is another config: lct.train refuses it without resume_changes=allow, and so does ckpt_path=auto)
    resumed = fit(compose_cfg(tmp_path, common + ["trainer.max_steps=4", "resume_changes=allow"]))
    assert resumed.global_step == 4 and resumed.init_from["path"] == str(edm_ckpt.resolve())
    monkeypatch.undo()
    # A consistency checkpoint is not a diffusion model to start from.
    with pytest.raises(LctError, match="is a consistency checkpoint"):
        run.build(
            compose_cfg(
                tmp_path / "c",
                ["experiment=cauchy_ot", "trainer.max_steps=1", f"init_from={tmp_path}/run/checkpoints/last.ckpt"],
            )
        )


def test_init_from_refuses_another_backbone(edm_run, tmp_path):
    _, edm_ckpt = edm_run
    with pytest.raises(LctError, match=r"backbone differs .*'norm'.*groupnorm"):  # slct uses NSLN
        run.build(compose_cfg(tmp_path / "a", ["experiment=slct", "trainer.max_steps=1", f"init_from={edm_ckpt}"]))
    with pytest.raises(LctError, match=r"backbone differs"):
        run.build(compose_cfg(tmp_path / "b", ["trainer.max_steps=1", f"init_from={edm_ckpt}"], backbone="dit_tiny"))
    with pytest.raises(LctError, match="init_from=.*this run is experiment=edm"):
        validate_config(compose_cfg(tmp_path / "c", ["experiment=edm", f"init_from={edm_ckpt}"]))
