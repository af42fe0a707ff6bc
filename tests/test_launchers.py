"""Hydra's launcher plugins run lct.train sweeps: joblib (runs in parallel on this machine, threads shared) and
submitit through its local executor (the SLURM path without a cluster); each run leaves a finished record."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from train_utils import CONF

from lct.io.records import find_records, load_record
from lct.train.threads import available_cores, threads_per_job

# Tiny CPU runs: the synthetic data, the tiny UNet, no in-loop evaluation, no checkpoint but the last.
TINY = ["data=synthetic", "backbone=unet_tiny", "trainer.max_steps=3", "data.batch_size=16", "logger=none"]
TINY += ["trainer.enable_progress_bar=false", "~callbacks.progress", "~callbacks.sample_grid", "~callbacks.digits"]


def sweep(tmp_path: Path, launcher: list[str]) -> list[dict]:
    """`python -m lct.train -m seed=0,1` on the launcher; the runs' records, by seed."""
    cmd = [sys.executable, "-m", "lct.train", "-m", "seed=0,1", *TINY, *launcher, f"hydra.sweep.dir={tmp_path}/s"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return sorted((load_record(p) for p in find_records([tmp_path / "s"])), key=lambda r: r["seed"])


def test_threads_per_job_shares_the_cores():
    assert threads_per_job(2, 16) == 8 and threads_per_job(3, 16) == 5 and threads_per_job(4, 2) == 1
    assert threads_per_job(-1, 16) == 1 and threads_per_job(-2, 16) == 16 // 15 and threads_per_job(1, 2) == 2
    assert 1 <= available_cores() <= (os.cpu_count() or 1)


@pytest.mark.parametrize("launcher", ["joblib", "local", "slurm"])
def test_launcher_configs_compose_with_their_documented_keys(launcher):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose("config", overrides=[f"hydra/launcher={launcher}"], return_hydra_config=True)
    keys = cfg.hydra.launcher
    if launcher == "joblib":
        assert keys._target_.endswith("JoblibLauncher") and keys.n_jobs == -1  # the plugin's: one run per core
    else:
        assert keys._target_.endswith("SlurmLauncher" if launcher == "slurm" else "LocalLauncher")
        assert {"timeout_min", "gpus_per_node", "nodes", "tasks_per_node"} <= set(keys)
    if launcher == "slurm":
        assert {"partition", "account"} <= set(keys) and keys.tasks_per_node == keys.gpus_per_node
        assert list(keys.setup) == [f"export NUM_NODES={keys.nodes}"]  # what trainer=multinode reads


def test_joblib_runs_two_seeds_in_parallel_each_on_its_share_of_the_cores(tmp_path):
    runs = sweep(tmp_path, ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"])
    assert [r["seed"] for r in runs] == [0, 1] and {r["status"] for r in runs} == {"finished"}
    assert all(r["host"]["threads"] == threads_per_job(2, available_cores()) for r in runs)
    assert all(r["steps"] == {"done": 3, "total": 3} and r["choices"]["data"] == "synthetic" for r in runs)
    assert len({r["run_dir"] for r in runs}) == 2 and all(f"seed={r['seed']}" in r["overrides"] for r in runs)


def test_submitit_local_executor_runs_each_job_to_a_finished_record(tmp_path):
    runs = sweep(tmp_path, ["hydra/launcher=local", "hydra.launcher.timeout_min=5"])
    assert [r["seed"] for r in runs] == [0, 1] and {r["status"] for r in runs} == {"finished"}
    assert all(Path(r["checkpoint"]).name == "last.ckpt" for r in runs)
    assert list((tmp_path / "s" / ".submitit").iterdir())  # the submitit path ran: its job folders
