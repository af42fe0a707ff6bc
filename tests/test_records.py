"""The run record: lct.io.records (write, load, find, add_eval) and the RunRecord callback in tiny CPU fits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch import Callback
from omegaconf import OmegaConf, open_dict
from train_utils import CONF, QUIET, compose_cfg, fit

from lct.errors import LctError
from lct.io import records
from lct.train.loggers import hydra_meta
from lct.train.record import RunRecord

TINY = ["trainer.max_steps=4", "data.batch_size=16"]

# ---------------------------------------------------------------- lct.io.records


def test_write_is_atomic_and_load_round_trips_with_nan_as_null(tmp_path):
    record = records.new_record(tmp_path, "ilct")
    record.update(train_loss=float("nan"), curves={"train/loss": [[1, 2.5], [2, float("inf")]]})
    path = records.write_record(tmp_path, record)
    assert path == tmp_path / "record.json" and [p.name for p in tmp_path.iterdir()] == ["record.json"]
    loaded = records.load_record(tmp_path)
    assert loaded["train_loss"] is None and loaded["curves"]["train/loss"] == [[1, 2.5], [2, None]]
    assert loaded["schema"] == records.SCHEMA_VERSION and loaded["experiment"] == "ilct"
    assert loaded["run_dir"] == str(tmp_path.resolve()) and list(loaded) == list(records.FIELDS)
    assert json.loads(path.read_text()) == loaded  # strict JSON: no NaN spelled out
    assert "NaN" not in path.read_text() and "Infinity" not in path.read_text()


def test_load_fills_missing_fields_of_an_older_or_foreign_record(tmp_path):
    (tmp_path / "record.json").write_text(json.dumps({"status": "finished", "host": {"cpu": "x"}, "metrics": {}}))
    record = records.load_record(tmp_path / "record.json")
    assert set(records.FIELDS) <= set(record) and record["schema"] is None and record["eval"] is None
    assert record["host"] == {"cpu": "x", **{k: None for k in records.HOST_FIELDS if k != "cpu"}}
    assert record["metrics"] == {"last": {}, "best": {}} and record["status"] == "finished"


@pytest.mark.parametrize(
    "text, match",
    [
        ("{not json", "unreadable"),
        ("[1, 2]", "not a JSON object"),
        (json.dumps({"schema": records.SCHEMA_VERSION + 1}), "newer than this lct reads"),
    ],
)
def test_load_refuses_corrupt_foreign_and_newer_files_naming_them(tmp_path, text, match):
    path = tmp_path / "record.json"
    path.write_text(text)
    with pytest.raises(LctError, match=match) as err:
        records.load_record(path)
    assert str(path) in str(err.value)


def test_load_of_a_missing_record_names_the_path(tmp_path):
    with pytest.raises(LctError, match=str(tmp_path / "record.json")):
        records.load_record(tmp_path)


def test_find_records_is_sorted_recursive_and_refuses_a_missing_directory(tmp_path):
    for sub in ("b/1", "a", "b/0/deep"):
        records.write_record(tmp_path / sub, records.new_record(tmp_path / sub))
    (tmp_path / "c").mkdir()
    found = records.find_records([tmp_path / "b", tmp_path, tmp_path / "a" / "record.json", tmp_path / "c"])
    assert found == sorted(p.resolve() for p in tmp_path.rglob("record.json")) and len(found) == 3
    assert records.find_records(tmp_path / "c") == []
    with pytest.raises(LctError, match="nowhere"):
        records.find_records([tmp_path / "nowhere"])


def test_add_eval_merges_protocols_and_run_dir_of_finds_the_record(tmp_path):
    run = tmp_path / "run"
    records.write_record(run, records.new_record(run))
    (run / "checkpoints").mkdir()
    report = {
        "checkpoint": str(run / "checkpoints" / "last.ckpt"),
        "results": {"1nfe": {"fid": 40.5, "kid": 0.02, "sigmas": [80.0]}, "2nfe": {"fid": 30.25}},
        "digits": {"1nfe": {"fid": 12.0, "legible": 0.5}},
    }
    scores = records.eval_scores(report, num_samples=1000, num_reference=1000, step=1500)
    assert scores["fid_1nfe"] == 40.5 and scores["fid_2nfe"] == 30.25 and "sigmas_1nfe" not in scores
    assert scores["digits_legible_1nfe"] == 0.5 and scores["step"] == 1500
    assert records.run_dir_of(run / "checkpoints" / "last.ckpt") == run.resolve()
    assert records.run_dir_of(tmp_path / "elsewhere.ckpt") is None
    records.add_eval(run, scores, "inception_1000")
    records.add_eval(run, {"fid_1nfe": 39.0}, "authors_50000")
    evals = records.load_record(run)["eval"]
    assert evals["inception_1000"] == scores and evals["authors_50000"] == {"fid_1nfe": 39.0}


def test_metric_direction_reads_the_key():
    assert [records.metric_direction(k) for k in ("digits/fid_1nfe", "val/kid_2nfe", "train/loss")] == ["min"] * 3
    assert [records.metric_direction(k) for k in ("val/recall_1nfe", "digits/legible_2nfe")] == ["max"] * 2
    assert records.metric_direction("train/lr") is None


def test_host_info_describes_this_machine():
    host = records.host_info(threads=3, gpu=None)
    assert set(host) == set(records.HOST_FIELDS) and host["threads"] == 3 and host["lct"] == records.__version__
    assert host["torch"] == torch.__version__
    assert host["git_commit"] is None or len(host["git_commit"]) == 40


# ---------------------------------------------------------------- the callback in a fit


class FakeEval(Callback):
    """Logs like the in-loop evaluation callbacks (straight into callback_metrics) and saves a grid."""

    def __init__(self, every_n_steps: int, values: dict, error_at: int | None = None, mark: dict | None = None):
        self.every_n_steps, self.values, self.error_at, self.mark = every_n_steps, values, error_at, mark or {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        step = trainer.global_step
        for name, value in self.mark.get(step, {}).items():  # what the module sets on a stop (lct.train.module)
            setattr(pl_module, name, value)
            if name == "preempted_step":  # as lct.train.preemption.Preemption stops a run
                trainer.should_stop = True
                trainer.callback_metrics["lct/preempted_step"] = torch.tensor(value)
        if step == self.error_at:
            raise LctError("3 non-finite losses in a row\n at step 2")
        if step % self.every_n_steps == 0:
            trainer.callback_metrics.update({k: torch.tensor(v[step]) for k, v in self.values.items()})
            grid = Path(trainer.default_root_dir) / "samples" / f"step{step:07d}.png"
            grid.parent.mkdir(parents=True, exist_ok=True)
            grid.write_bytes(b"png")


def _fit_with(cfg, fake: Callback):
    from lct.train.run import build

    module, dm, trainer, ckpt = build(cfg)
    trainer.callbacks.insert(0, fake)  # before RunRecord, as lct.train orders the eval callbacks
    trainer.fit(module, datamodule=dm, ckpt_path=ckpt)
    return trainer


def test_record_of_a_finished_run_holds_metrics_curves_grids_and_config(tmp_path, monkeypatch):
    cfg = compose_cfg(tmp_path, TINY)
    values = {"digits/fid_1nfe": {2: 50.0, 4: 60.0}, "digits/legible_1nfe": {2: 0.2, 4: 0.4}}
    writes, real_write = [], records.write_record
    monkeypatch.setattr(records, "write_record", lambda d, r: writes.append(r["status"]) or real_write(d, r))
    _fit_with(cfg, FakeEval(2, values))
    rec = records.load_record(tmp_path / "run")
    assert writes == ["running", "running", "running", "finished"]  # start, steps 2 and 4, end
    assert rec["status"] == "finished" and rec["error"] is None and rec["steps"] == {"done": 4, "total": 4}
    assert rec["metrics"]["last"]["digits/fid_1nfe"] == {"value": 60.0, "step": 4}
    assert rec["metrics"]["best"]["digits/fid_1nfe"] == {"value": 50.0, "step": 2}  # lower is better
    assert rec["metrics"]["best"]["digits/legible_1nfe"] == {"value": pytest.approx(0.4), "step": 4}
    assert rec["curves"]["digits/fid_1nfe"] == [[2, 50.0], [4, 60.0]]  # each value once, not at every write
    assert [p[0] for p in rec["curves"]["train/loss"]] == [1, 2, 3, 4] and rec["train_loss"] is not None
    assert [Path(p).name for p in rec["sample_grids"]] == ["step0000002.png", "step0000004.png"]
    assert rec["checkpoint"] == str((tmp_path / "run" / "checkpoints" / "last.ckpt").resolve())
    assert rec["config"] == OmegaConf.to_container(cfg, resolve=True) and rec["seed"] == 0
    assert rec["wall_seconds"] > 0 and rec["steps_per_second"] > 0 and rec["host"]["threads"] >= 1
    assert rec["choices"] == {} and rec["overrides"] == []  # composed without Hydra's runtime


def test_a_resumed_run_keeps_its_history(tmp_path):
    values = {"digits/fid_1nfe": {2: 50.0, 4: 40.0, 6: 45.0}}
    _fit_with(compose_cfg(tmp_path, TINY), FakeEval(2, values))
    first = records.load_record(tmp_path / "run")
    records.add_eval(tmp_path / "run", {"fid_1nfe": 1.0}, "inception_10")
    longer = ["trainer.max_steps=6", "data.batch_size=16", "resume_changes=allow"]  # K changes: 4 -> 6
    _fit_with(compose_cfg(tmp_path, longer), FakeEval(2, values))
    rec = records.load_record(tmp_path / "run")
    assert rec["started"] == first["started"] and rec["steps"] == {"done": 6, "total": 6}
    assert rec["curves"]["digits/fid_1nfe"] == [[2, 50.0], [4, 40.0], [6, 45.0]]
    assert rec["metrics"]["best"]["digits/fid_1nfe"] == {"value": 40.0, "step": 4}
    assert rec["wall_seconds"] > first["wall_seconds"] and rec["eval"] == {"inception_10": {"fid_1nfe": 1.0}}
    assert len(rec["sample_grids"]) == 3


@pytest.mark.parametrize(
    "mark, error_at, status",
    [
        ({}, 3, "failed"),
        ({2: {"nonfinite_stop_path": "x/nonfinite-stop.ckpt"}}, 3, "stopped_nonfinite"),
        ({2: {"preempted_step": 2}}, None, "preempted"),
    ],
)
def test_record_says_how_a_run_ended(tmp_path, mark, error_at, status):
    cfg = compose_cfg(tmp_path, TINY)
    try:
        _fit_with(cfg, FakeEval(100, {}, error_at=error_at, mark=mark))
    except LctError:
        assert error_at is not None
    rec = records.load_record(tmp_path / "run")
    assert rec["status"] == status
    if error_at is None:
        assert rec["error"] is None and rec["steps"]["done"] == 2
        assert rec["metrics"]["last"] == {} and set(rec["curves"]) == {"train/loss"}  # bookkeeping is no metric
    else:
        assert rec["error"] == "LctError: 3 non-finite losses in a row at step 2" and rec["steps"]["done"] == 3


@pytest.fixture
def hydra_runtime():
    """Sets Hydra's runtime config as a Hydra job does, and clears it after the test."""

    def make(tmp_path, overrides, sweep_dir=None):
        with initialize_config_dir(config_dir=CONF, version_base="1.3"):
            full = compose("config", overrides=list(overrides), return_hydra_config=True)
        with open_dict(full):
            full.hydra.runtime.output_dir = str(tmp_path / "run")
            if sweep_dir is not None:  # a job of a multirun (-m) sweep
                full.hydra.mode, full.hydra.sweep.dir = RunMode.MULTIRUN, str(sweep_dir)
        HydraConfig.instance().set_config(full)
        cfg = OmegaConf.masked_copy(full, [k for k in full if k != "hydra"])
        return cfg

    yield make
    HydraConfig.instance().cfg = None


def test_choices_and_overrides_come_from_hydra_runtime(tmp_path, hydra_runtime):
    overrides = ["data=synthetic", "backbone=unet_tiny", f"paths.root_dir={tmp_path}"]
    overrides += [f"paths.output_dir={tmp_path}/run", *QUIET, *TINY, "coupling=ot_global", "experiment=ilct"]
    cfg = hydra_runtime(tmp_path, overrides)
    fit(cfg)
    rec = records.load_record(tmp_path / "run")
    assert rec["choices"]["coupling"] == "ot_global" and rec["choices"]["experiment"] == "ilct"  # the override wins
    assert rec["choices"]["norm"] is None and rec["choices"]["metric"] == "pseudo_huber"  # a null group stays null
    assert not any(k == "hydra" or k.startswith("hydra/") for k in rec["choices"])
    assert rec["overrides"] == overrides and rec["experiment"] == "ilct"
    # A Hydra runtime of another run directory (a finished run in the same process) is not this run's.
    assert hydra_meta(cfg, tmp_path / "other")["choices"] == {}


def test_only_rank_zero_writes(tmp_path):
    class NotZero:
        is_global_zero = False

    callback = RunRecord(compose_cfg(tmp_path))
    callback.on_train_start(NotZero(), None)
    callback.on_train_end(NotZero(), None)
    callback.on_exception(NotZero(), None, RuntimeError("x"))
    assert not (tmp_path / "run").exists()


@pytest.mark.slow  # two gloo ranks started by ddp_spawn (~35 s on 2 cores)
def test_a_ddp_spawn_run_writes_one_finished_record(tmp_path):
    # The spawned ranks have no Hydra runtime: the callback must have resolved the config in the launcher.
    import os
    import subprocess
    import sys

    args = ["trainer=ddp_cpu", "data=synthetic", "backbone=unet_tiny", "trainer.max_steps=3", "data.batch_size=16"]
    args += ["trainer.enable_progress_bar=false", "~callbacks.progress", "logger=none", f"hydra.run.dir={tmp_path}/r"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "lct.train", *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rec = records.load_record(tmp_path / "r")
    assert rec["status"] == "finished" and rec["steps"] == {"done": 3, "total": 3}
    assert rec["choices"]["trainer"] == "ddp_cpu" and rec["config"]["trainer"]["devices"] == 2
    assert rec["config"]["paths"]["output_dir"] == str(tmp_path / "r")
