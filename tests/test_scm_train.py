"""sCM as one more kind (experiment=scm): training, checkpoints, sampling at 1 and 2 NFE, exact resume, DDP,
the paper's parts as overrides, and lct.sample / lct.evaluate on a checkpoint."""

import json
import math

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

from lct.core.coupling import MinibatchOT
from lct.core.metrics import Cauchy
from lct.core.scm import SCMObjective, TrigFlowFunction
from lct.errors import LctError
from lct.io.checkpoint import load_for_sampling

SCM = ["experiment=scm", "data.batch_size=8", "log_every=5", "method.scm.warmup_steps=10"]


@pytest.fixture(scope="module")
def scm_run(tmp_path_factory):
    """A 30-step sCM run on synthetic latents."""
    tmp = tmp_path_factory.mktemp("scm")
    module = fit(compose_cfg(tmp, SCM + ["trainer.max_steps=30", "~callbacks.sample_grid"]))
    return module, tmp / "run" / "checkpoints" / "last.ckpt"


def test_scm_trains_and_records_its_kind(scm_run):
    module, ckpt = scm_run
    assert isinstance(module.student, TrigFlowFunction) and isinstance(module.objective, SCMObjective)
    assert module.kind == "scm" and module.global_step == 30
    assert all(torch.isfinite(p).all() for p in module.parameters())
    # w_phi is trained with the student: it left its zero initialisation.
    assert module.student.weighting.linear.weight.abs().max() > 0
    meta = torch.load(ckpt, weights_only=True)["lct"]
    assert meta["kind"] == "scm" and meta["config"]["method"]["scm"]["tangent_c"] == 0.1
    metrics = module.trainer.callback_metrics
    assert float(metrics["train/warmup_r"]) == 1.0 and "train/tangent_norm" in metrics


def test_scm_checkpoint_samples_at_1_and_2_nfe(scm_run):
    module, ckpt = scm_run
    bundle = load_for_sampling(ckpt)
    assert bundle.kind == "scm" and isinstance(bundle.model, TrigFlowFunction)
    ema = next(iter(module.emas.values())).state_dict()  # the round trip: the run's first EMA, w_phi included
    assert bundle.model.state_dict().keys() == ema.keys()
    assert all(torch.equal(v, ema[k]) for k, v in bundle.model.state_dict().items())
    assert bundle.nfe_sigmas(1) == [math.pi / 2]
    assert bundle.nfe_sigmas(2) == pytest.approx([math.pi / 2, 1.1], abs=1e-9)  # scm.yaml's sigma_d tan(1.1)
    noise = torch.randn(4, *bundle.latent_shape, generator=torch.Generator().manual_seed(0))
    one, two = (bundle.sample(noise, bundle.nfe_sigmas(n)) for n in (1, 2))
    assert one.shape == two.shape == noise.shape and torch.isfinite(one).all() and torch.isfinite(two).all()
    assert not torch.equal(one, two)
    with pytest.raises(LctError, match="1 or 2 NFE"):
        bundle.nfe_sigmas(35)


def test_scm_resume_is_exact(tmp_path):
    assert_resume_is_exact(tmp_path, [*SCM, "~callbacks.sample_grid"])


def test_the_papers_parts_are_one_override_each(tmp_path):
    cfg = compose_cfg(tmp_path, SCM + ["trainer.max_steps=2", "metric=cauchy", "coupling=ot", "norm=nsln"])
    module = fit(cfg)
    obj = module.objective
    assert isinstance(obj.metric, Cauchy) and obj.c == pytest.approx(0.00054 * math.sqrt(4 * 8 * 8))
    assert isinstance(obj.coupling, MinibatchOT) and cfg.backbone.norm == "nsln"
    assert module.global_step == 2 and all(torch.isfinite(p).all() for p in module.parameters())


def test_metric_l2_is_the_papers_mean_square(tmp_path):
    from lct.train.run import build

    module = build(compose_cfg(tmp_path, SCM + ["trainer.max_steps=1", "metric=l2"]))[0]
    assert module.objective.metric is None and module.objective.c is None


def test_unknown_scm_keys_are_one_error(tmp_path):
    from lct.train.run import build

    with pytest.raises(LctError, match=r"method.scm has unknown keys \['tangent'\]"):
        build(compose_cfg(tmp_path, SCM + ["trainer.max_steps=1", "+method.scm.tangent=0.1"]))


@pytest.mark.slow
def test_scm_ddp_first_step_equals_single_process(tmp_path):
    assert_ddp_step_equals_single_process(tmp_path, [*SCM, "~callbacks.sample_grid"])


@pytest.mark.slow
def test_scm_sample_and_evaluate_clis_on_digits(tmp_path):
    from lct.cli import evaluate as evaluate_cli

    cfg = compose_cfg(
        tmp_path,
        SCM + ["trainer.max_steps=3", f"data.root={tmp_path}/latents", "~callbacks.sample_grid", "~callbacks.digits"],
        data="mnist",
    )
    fit(cfg)
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    for nfe in (1, 2):
        z = sample_npz(ckpt, nfe, tmp_path / f"s{nfe}")
        assert z["images"].shape[0] == 3 and np.allclose(z["sigmas"][0], math.pi / 2)
    out = tmp_path / "eval"
    argv = [str(ckpt), "--num-samples", "16", "--num-reference", "16", "--metrics", "digit", "--device", "cpu"]
    report = evaluate_cli.main([*argv, "--out", str(out)])
    assert report["kind"] == "scm" and set(report["digits"]) == {"1nfe", "2nfe"}
    assert json.loads((out / "metrics.json").read_text())["kind"] == "scm"
