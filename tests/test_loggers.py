"""Every logger carries the run's config: CSV hparams.yaml, TensorBoard hparams, and a wandb offline run's
config, group, job_type and tags (read back from the files the offline run writes)."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_records import hydra_runtime  # noqa: F401 (a fixture)
from train_utils import QUIET, compose_cfg, fit

from lct.train.loggers import WandbLogger, hydra_meta, hyperparameters, wandb_tags

ROOT = Path(__file__).resolve().parents[1]
TINY = ["trainer.max_steps=2", "data.batch_size=16"]
AXES = {"metric": "pseudo_huber", "coupling": "none", "c_schedule": "ict", "norm": None}  # experiment=ilct


def test_csv_and_tensorboard_loggers_get_the_resolved_config(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    cfg = compose_cfg(tmp_path, TINY)
    run = str(tmp_path / "run")
    cfg.logger = {
        "csv": {"_target_": "lct.train.loggers.ResumableCSVLogger", "save_dir": run},
        "tensorboard": {"_target_": "lightning.pytorch.loggers.TensorBoardLogger", "save_dir": run, "name": "tb"},
    }
    fit(cfg)
    csv = yaml.safe_load((tmp_path / "run" / "csv" / "version_0" / "hparams.yaml").read_text())
    assert csv["optimizer"]["lr"] == cfg.optimizer.lr and csv["seed"] == 0 and csv["choices"] == {}
    assert csv["trainer"]["max_steps"] == 2 and csv["overrides"] == []
    events = next((tmp_path / "run" / "tb").rglob("events.out.tfevents.*"))
    acc = EventAccumulator(str(events.parent))
    acc.Reload()
    content = acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    assert hparams["optimizer/lr"].number_value == pytest.approx(cfg.optimizer.lr)
    assert hparams["trainer/max_steps"].number_value == 2 and hparams["experiment_name"].string_value == "default"


def test_hyperparameters_put_choices_beside_the_config():
    meta = {"choices": {"coupling": "ot", "norm": None}, "overrides": ["seed=1"]}
    params = hyperparameters({"seed": 1, "optimizer": {"lr": 0.001}}, meta)
    assert params == {
        "choices": {"coupling": "ot", "norm": None},
        "overrides": ["seed=1"],
        "seed": 1,
        "optimizer": {"lr": 0.001},
    }
    assert wandb_tags({"norm": None, "coupling": "ot"}) == ["coupling:ot", "norm:null"]


def test_without_hydra_runtime_the_wandb_logger_is_ungrouped_and_untagged(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    logger = WandbLogger(run_dir=str(tmp_path), job_type="ilct", save_dir=str(tmp_path), offline=True)
    assert logger._wandb_init["group"] is None and logger._wandb_init["tags"] == []
    assert logger._wandb_init["name"] == "ilct" and logger._wandb_init["job_type"] == "ilct"
    assert hydra_meta(run_dir=tmp_path)["multirun"] is False
    grouped = WandbLogger(run_dir=str(tmp_path), group="mine", tags=["a"], save_dir=str(tmp_path), offline=True)
    assert grouped._wandb_init["group"] == "mine" and grouped._wandb_init["tags"] == ["a"]


def test_wandb_run_of_a_sweep_job_in_process(tmp_path, hydra_runtime, monkeypatch):  # noqa: F811
    monkeypatch.setenv("WANDB_MODE", "offline")
    overrides = ["data=synthetic", "backbone=unet_tiny", f"paths.root_dir={tmp_path}", *QUIET, *TINY]
    overrides += [f"paths.output_dir={tmp_path}/run", "logger=wandb", "experiment=slct_noot", "seed=3"]
    fit(hydra_runtime(tmp_path, overrides, sweep_dir=tmp_path / "sweep_a"))
    run, config = wandb_run(next((tmp_path / "run" / "wandb").glob("offline-run-*/run-*.wandb")))
    assert run.run_group == "sweep_a" and run.job_type == "slct_noot" and run.display_name == "run"
    assert {"coupling:none", "metric:cauchy", "c_schedule:adaptive", "norm:nsln", "experiment:slct_noot"} <= set(
        run.tags
    )
    assert config["choices"]["coupling"] == "none" and config["seed"] == 3 and config["overrides"] == overrides
    assert (tmp_path / "run" / "csv" / "version_0" / "hparams.yaml").is_file()  # logger=wandb keeps the CSV


def wandb_run(path: Path):
    """(the run record, the config as a dict) of an offline wandb run's .wandb file."""
    records = read_wandb_records(path)
    run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
    updates = [u for r in records if r.WhichOneof("record_type") == "config" for u in r.config.update]
    return run, {u.key: json.loads(u.value_json) for u in updates}


def read_wandb_records(path: Path) -> list:
    """The protobuf records of an offline run's .wandb file (a LevelDB-style log: 7-byte file header, then
    32 KiB blocks of chunks, each with a 7-byte header: crc32, length, type full/first/middle/last)."""
    from wandb.proto import wandb_internal_pb2

    data, pos, block, payload, out = path.read_bytes(), 7, 32768, b"", []
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0:
            break
        payload += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # full, or the last chunk of a record
            record = wandb_internal_pb2.Record()
            record.ParseFromString(payload)
            out.append(record)
            payload = b""
    return out


def test_wandb_offline_runs_carry_config_group_job_type_and_tags(tmp_path):
    sweep = tmp_path / "my_sweep"
    args = ["-m", "seed=0,1", "logger=wandb", "data=synthetic", "backbone=unet_tiny", *TINY, "experiment=ilct"]
    args += ["trainer.enable_progress_bar=false", "~callbacks.progress", f"hydra.sweep.dir={sweep}"]
    env = {**os.environ, "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "lct.train", *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    runs = sorted(sweep.glob("*/wandb/offline-run-*/run-*.wandb"))
    assert len(runs) == 2  # one wandb run per sweep job, not one shared by both
    for path in runs:
        run, config = wandb_run(path)
        assert run.run_group == "my_sweep" and run.job_type == "ilct"
        tags = set(run.tags)
        assert {"coupling:none", "metric:pseudo_huber", "c_schedule:ict", "norm:null", "experiment:ilct"} <= tags
        assert run.display_name == path.parents[2].name  # the sweep job's directory
        assert {k: config["choices"][k] for k in AXES} == AXES
        assert config["experiment_name"] == "ilct" and config["trainer"]["max_steps"] == 2
        assert config["seed"] == int(path.parents[2].name.split("seed=")[1].split(",")[0])
