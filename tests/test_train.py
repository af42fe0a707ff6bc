"""The training system: every experiment runs, resume and DDP are exact, bad configs fail early."""

import math
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra.errors import ConfigCompositionException
from train_utils import assert_ddp_step_equals_single_process, assert_resume_is_exact, compose_cfg, fit

from lct.errors import LctError

EXPERIMENTS = ["ilct", "cauchy", "cauchy_diff", "cauchy_ot", "cauchy_ot_c", "slct", "slct_noot"]


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_runs_a_few_steps(tmp_path, experiment):
    cfg = compose_cfg(
        tmp_path, [f"experiment={experiment}", "trainer.max_steps=3", "log_every=1", "data.batch_size=16"]
    )
    module = fit(cfg)
    assert module.global_step == 3
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
    assert all(torch.isfinite(p).all() for p in module.parameters())


def test_method_axes_reach_the_module(tmp_path):
    cfg = compose_cfg(tmp_path, ["experiment=slct"])
    assert cfg.method.metric._target_ == "lct.core.metrics.Cauchy"
    assert cfg.method.c._target_ == "lct.core.c_schedules.AdaptiveC" and cfg.method.c.s0 == 10
    assert cfg.method.diffusion.weight == 5.0 and cfg.method.coupling.method == "exact"
    assert cfg.method.teacher._target_ == "lct.core.teacher.StopGrad"
    assert cfg.backbone.norm == "nsln" and cfg.experiment_name == "slct"  # names the run directory
    ilct = compose_cfg(tmp_path, ["experiment=ilct"])
    assert ilct.method.metric._target_ == "lct.core.metrics.PseudoHuber" and ilct.method.diffusion.weight == 0.0
    assert ilct.method.coupling._target_ == "lct.core.coupling.NoCoupling" and ilct.backbone.norm == "groupnorm"


def test_slct_noot_is_slct_without_ot(tmp_path):
    noot, slct = (
        compose_cfg(tmp_path, ["experiment=slct_noot"]),
        compose_cfg(tmp_path, ["experiment=slct", "coupling=none"]),
    )
    assert noot.experiment_name == "slct_noot"
    noot.experiment_name = slct.experiment_name
    assert noot == slct


def test_paper_scale_configs_keep_paper_values(tmp_path):
    cfg = compose_cfg(tmp_path, ["experiment=slct", "scale=paper", "backbone=unet_paper"])
    assert cfg.backbone.norm == "nsln" and cfg.backbone.name == "unet_paper"
    assert compose_cfg(tmp_path, ["experiment=cauchy_ot_c", "backbone=unet_paper"]).backbone.norm == "groupnorm"
    assert (cfg.method.curriculum.s0, cfg.method.curriculum.s1) == (10, 640)
    assert list(cfg.ema.decays) == [0.99993] and not cfg.ema.warmup
    assert cfg.optimizer._target_ == "torch.optim.RAdam" and cfg.optimizer.lr == 1e-4
    assert cfg.optimizer.weight_decay == 1e-4 and cfg.optimizer.eps == 1e-8
    cpu = compose_cfg(tmp_path, ["experiment=slct"])
    assert cpu.optimizer.lr == 1e-3 and cpu.method.curriculum.s1 == 160 and cpu.ema.warmup == 10


def test_config_typos_fail_at_compose_time_naming_the_key(tmp_path):
    with pytest.raises(ConfigCompositionException, match="metrc"):
        compose_cfg(tmp_path, ["method.metrc=cauchy"])
    with pytest.raises(ConfigCompositionException, match="cauchyy") as err:
        compose_cfg(tmp_path, ["metric=cauchyy"])
    assert "pseudo_huber" in str(err.value.__cause__ or err.value)  # lists the valid options
    with pytest.raises(ConfigCompositionException, match="experiment"):
        compose_cfg(tmp_path, ["experiment=slctt"])


def test_resume_is_exact(tmp_path):
    """k steps + resume + k steps == 2k steps (parameters, EMA, optimizer-driven state)."""
    full, resumed = assert_resume_is_exact(tmp_path, ["experiment=slct", "data.batch_size=16", "c_schedule=online"])
    assert full.objective.c(21, 6) == resumed.objective.c(21, 6) and full.objective.c.initialized


@pytest.mark.parametrize("coupling", ["none", "ot_global"])
def test_ddp_first_step_equals_single_process(tmp_path, coupling):
    assert_ddp_step_equals_single_process(
        tmp_path, ["experiment=cauchy_ot", f"coupling={coupling}", "data.batch_size=16"]
    )


def test_nonfinite_steps_are_skipped_then_stop_with_checkpoint(tmp_path):
    from lct.train.run import build

    cfg = compose_cfg(tmp_path, ["experiment=cauchy", "trainer.max_steps=10", "max_nonfinite=3", "data.batch_size=16"])
    module, dm, trainer, _ = build(cfg)
    with torch.no_grad():
        next(module.student.backbone.parameters()).fill_(math.nan)
    with pytest.raises(LctError, match="3 non-finite losses in a row") as err:
        trainer.fit(module, datamodule=dm)
    assert "no step of this run had a finite loss" in str(err.value) and "good" not in str(err.value)
    # A skipped step still consumes its batch and counts as a step (data order and N(k) stay aligned
    # with global_step, so resume stays exact); the third skip stops the run before the step ends.
    assert module.nonfinite_total == 3 and module.global_step == 2
    assert (Path(cfg.paths.output_dir) / "checkpoints" / "nonfinite-stop.ckpt").is_file()


def test_atomic_checkpoint_never_leaves_a_partial_file(tmp_path, monkeypatch):
    from lct.train.callbacks import AtomicCheckpointIO

    io, path = AtomicCheckpointIO(), tmp_path / "last.ckpt"
    io.save_checkpoint({"a": torch.ones(3)}, path)

    def boom(obj, f, *a, **k):
        Path(f).write_bytes(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"a": torch.zeros(3)}, path)
    assert torch.load(path)["a"].sum() == 3 and list(tmp_path.iterdir()) == [path]


def test_tiny_batches_still_give_a_finite_loss(tmp_path):
    """Batch 2: OT over two samples, an (almost surely) empty diffusion tail -- the loss stays finite."""
    module = fit(compose_cfg(tmp_path, ["experiment=slct", "trainer.max_steps=2", "data.batch_size=2"]))
    assert module.nonfinite_total == 0 and module.global_step == 2


def test_missing_latents_name_the_encode_command(tmp_path):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}  # it asks for the traceback
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "lct.train",
            "data=celebahq256",
            f"data.root={tmp_path}/none",
            f"hydra.run.dir={tmp_path}/run",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert out.returncode == 2
    assert "error: " in out.stderr and "lct.encode" in out.stderr and "Traceback" not in out.stderr


def test_multirun_gives_each_job_its_own_directory(tmp_path):
    import subprocess
    import sys

    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "lct.train",
            "-m",
            "experiment=ilct,slct",
            "data=synthetic",
            "trainer.max_steps=1",
            "logger=none",
            "trainer.enable_progress_bar=false",
            "~callbacks.progress",
            f"hydra.sweep.dir={tmp_path}/sweep",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    jobs = sorted(p.name for p in (tmp_path / "sweep").iterdir() if p.is_dir())
    assert len(jobs) == 2 and jobs[0].startswith("0_") and "experiment=ilct" in jobs[0]
    for job in jobs:
        assert (tmp_path / "sweep" / job / "checkpoints" / "last.ckpt").is_file()
        assert (tmp_path / "sweep" / job / "config_resolved.yaml").is_file()


@pytest.mark.parametrize("coupling", ["ot", "none"])
def test_nan_in_the_data_is_skipped_counted_and_stops_like_a_nan_loss(tmp_path, coupling):
    """A NaN batch goes through the same skip path with or without OT (it used to crash at the OT step)."""
    from lct.train.run import build

    cfg = compose_cfg(
        tmp_path,
        [
            "experiment=cauchy_ot",
            f"coupling={coupling}",
            "trainer.max_steps=6",
            "max_nonfinite=3",
            "data.batch_size=16",
            "data.num_items=64",
        ],
    )
    module, dm, trainer, _ = build(cfg)

    class PoisonData(L.Callback):  # after the first step every row of the data holds a NaN
        def on_train_batch_end(self, *args):
            dm.data[:, 0, 0, 0] = math.nan

    trainer.callbacks.append(PoisonData())
    with pytest.raises(LctError, match="3 non-finite losses in a row") as err:
        trainer.fit(module, datamodule=dm)
    last = module.last_finite_step  # 0, or 1 if the loader had fetched step 1's batch already
    assert last in (0, 1) and module.nonfinite_total == 3
    assert "x0" in str(err.value) and f"the last finite loss was at step {last}" in str(err.value)
    assert (Path(cfg.paths.output_dir) / "checkpoints" / "nonfinite-stop.ckpt").is_file()


def test_unknown_options_fail_at_instantiate_naming_the_key(tmp_path):
    from lct.train.run import build

    with pytest.raises(LctError, match=r"method.coupling.scope 'galactic'.*global.*local"):
        build(compose_cfg(tmp_path, ["method.coupling.scope=galactic", "trainer.max_steps=1"]))
    with pytest.raises(LctError, match=r"method.coupling.method 'hungarian'"):
        build(compose_cfg(tmp_path, ["method.coupling.method=hungarian", "trainer.max_steps=1"]))
    with pytest.raises(LctError, match=r"method.metric._target_ 'lct.core.metrics.Huber' cannot be imported"):
        build(compose_cfg(tmp_path, ["method.metric._target_=lct.core.metrics.Huber", "trainer.max_steps=1"]))
    with pytest.raises(LctError, match="method.diffusion.weight"):
        build(compose_cfg(tmp_path, ["method.diffusion.weight=-1", "trainer.max_steps=1"]))


def test_samples_per_s_is_logged_only_once_a_rate_exists(tmp_path):
    import csv

    fit(compose_cfg(tmp_path, ["trainer.max_steps=4", "log_every=1", "data.batch_size=16", "logger=csv"]))
    rows = [r for f in (tmp_path / "run").rglob("metrics.csv") for r in csv.DictReader(f.open())]
    rates = [r["train/samples_per_s"] for r in rows if r.get("train/td_std")]
    assert len(rates) == 4 and rates[0] == "" and all(float(r) > 0 for r in rates[1:])


def test_the_noise_grid_is_validated_on_the_host_and_copied_once_per_n(tmp_path):
    """The step indexes a device copy of the grid made once per N (no per-step copies, no device checks of
    lambda's gaps): the grid itself must be strictly decreasing in float32, checked on the host."""
    from lct.builders import build_objective, build_student
    from lct.core import NoiseLevels

    cfg = compose_cfg(tmp_path, ["experiment=slct_noot", "trainer.max_steps=10"])
    objective = build_objective(cfg, build_student(cfg), 10, (4, 8, 8))
    like = torch.zeros(2)
    grid = objective.device_grid(11, like)
    assert torch.equal(grid, objective.grid(11)[0].float()) and objective.device_grid(11, like) is grid
    objective.levels, objective._grids = NoiseLevels(sigma_min=1.0, sigma_max=1.000001), {}
    with pytest.raises(LctError, match="11-point noise grid is not strictly decreasing in float32"):
        objective.grid(11)
