"""Issue 39: one run per run directory, ckpt_path=null/auto never mix runs, and a run dir is the user's to move:
older configs, moved directories and relative data roots resume with the run's own command."""

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir

from lct.errors import LctError
from lct.train.resume import config_changes
from lct.train.rundir import LOCK_NAME, RunDirLock

CONF = str(Path(__file__).resolve().parents[1] / "conf")
SRC = str(Path(__file__).resolve().parents[1] / "src")
TINY = ["data=synthetic", "data.batch_size=8", "trainer.enable_progress_bar=false", "callbacks.sample_grid=null"]


def _cfg(tmp_path, *overrides, run="run"):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose(
            "config",
            overrides=[
                *TINY,
                "logger=none",
                f"paths.root_dir={tmp_path}",
                f"paths.output_dir={tmp_path}/{run}",
                *overrides,
            ],
        )


def _env() -> dict:
    """The environment of a user's shell: no HYDRA_FULL_ERROR or LCT_DEBUG (they keep tracebacks)."""
    env = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "LCT_DEBUG")}
    return {**env, "PYTHONPATH": SRC + os.pathsep + env.get("PYTHONPATH", "")}


def _train(tmp_path, *overrides, run="run"):
    from lct.train.run import train

    return train(_cfg(tmp_path, *overrides, run=run))


# --- one run per run dir ------------------------------------------------------------------------------------


def test_a_second_run_on_a_held_run_dir_is_refused_naming_the_holder(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import sys, time; sys.path.insert(0, {SRC!r})\n"
         f"from lct.train.rundir import RunDirLock\nwith RunDirLock({str(tmp_path)!r}):\n"
         "    print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LctError, match=rf"in use by another lct run \(pid {holder.pid} on host .*hydra\.run\.dir"):
            RunDirLock(tmp_path).__enter__()
        (tmp_path / "run").mkdir()
        argv = [sys.executable, "-m", "lct.train", *TINY, "logger=none", f"hydra.run.dir={tmp_path}"]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=_env())
        assert done.returncode == 2
        errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and f"pid {holder.pid}" in errors[0] and "Traceback" not in done.stderr
        assert not (tmp_path / "config_resolved.yaml").exists()  # the refused run wrote nothing of its own
    finally:
        holder.kill()
        holder.wait()


def test_a_killed_holders_lock_is_taken_over_with_a_line_and_released_at_the_end(tmp_path, caplog):
    (tmp_path / LOCK_NAME).write_text("pid 999999 on host gone since Mon\n")  # what a SIGKILLed holder leaves
    caplog.set_level(logging.WARNING)
    with RunDirLock(tmp_path):
        assert f"pid {os.getpid()}" in (tmp_path / LOCK_NAME).read_text()
    assert "took over the lock of pid 999999 on host gone" in caplog.text
    assert (tmp_path / LOCK_NAME).read_text() == ""  # released by a run that ended: nothing to take over
    caplog.clear()
    with RunDirLock(tmp_path):
        pass
    assert "took over" not in caplog.text


# --- ckpt_path=null / auto ----------------------------------------------------------------------------------


def test_ckpt_path_null_in_a_used_run_dir_refuses_instead_of_overwriting(tmp_path):
    _train(tmp_path, "trainer.max_steps=3")
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    before = last.read_bytes()
    with pytest.raises(LctError, match=r"ckpt_path=null starts a fresh run.*ckpt_path=auto.*resume_changes=allow"):
        _train(tmp_path, "trainer.max_steps=2", "ckpt_path=null")
    assert last.read_bytes() == before
    _train(tmp_path, "trainer.max_steps=2", "ckpt_path=null", "resume_changes=allow")  # said so: overwrites


def test_ckpt_path_auto_never_resumes_a_checkpoint_of_another_config(tmp_path):
    _train(tmp_path, "trainer.max_steps=3")
    # Another config's record in the run dir (as a ckpt_path=null run with resume_changes=allow would leave it):
    stored = tmp_path / "run" / "config_resolved.yaml"
    other = yaml.safe_load(stored.read_text())
    other["optimizer"]["lr"] = 5e-4
    stored.write_text(yaml.safe_dump(other))
    with pytest.raises(LctError, match=r"ckpt_path=auto would resume .*last\.ckpt, which was trained with another "
                       r"config: optimizer\.lr: 0\.001 -> 0\.0005"):  # fmt: skip
        _train(tmp_path, "trainer.max_steps=3", "optimizer.lr=5e-4")


# --- resume compatibility -----------------------------------------------------------------------------------


def test_keys_added_by_later_versions_are_not_changes_unless_the_user_sets_them():
    before = {"trainer": {"max_steps": 2}, "optimizer": {"lr": 1e-3}}
    assert (
        config_changes(before, {"trainer": {"max_steps": 2, "flush_denormal": True}, "optimizer": {"lr": 1e-3}}) == []
    )
    assert config_changes(before, {**before, "new_group": {"knob": 3}}) == []  # unknown to ADDED_KEYS: a new default
    assert config_changes(before, {**before, "lr_schedule": {"cooldown": 0.2}}) == [
        "lr_schedule.cooldown: '<absent>' -> 0.2"  # listed, and set to something other than its default
    ]
    assert config_changes({**before, "gone": 1}, before) == []  # removed by a later version


def test_paths_inside_a_moved_run_dir_and_a_relative_data_root_compare_equal():
    def cfg(run, root, data_root):
        return {
            "paths": {"output_dir": run, "root_dir": root},
            "trainer": {"default_root_dir": run},
            "callbacks": {"checkpoint": {"dirpath": f"{run}/checkpoints"}},
            "logger": {"csv": {"save_dir": run}},
            "data": {"root": data_root},
        }

    old = cfg("/old/place/run", "/home/me/proj", "data/mnist")
    assert config_changes(old, cfg("/new/place/run2", "/elsewhere", "/home/me/proj/data/mnist")) == []
    assert config_changes(old, cfg("/new/place/run2", "/elsewhere", "/other/mnist")) == [
        "data.root: '/home/me/proj/data/mnist' -> '/other/mnist'"
    ]


def test_a_run_made_by_an_older_version_resumes_with_its_own_command(tmp_path):
    _train(tmp_path, "trainer.max_steps=2")
    stored = tmp_path / "run" / "config_resolved.yaml"
    old = yaml.safe_load(stored.read_text())
    old["trainer"].pop("flush_denormal")  # made before the key existed
    stored.write_text(yaml.safe_dump(old))
    _train(tmp_path, "trainer.max_steps=2")  # its own command resumes it: no refusal


def test_a_moved_run_dir_resumes_and_a_relative_data_root_is_recorded_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _train(tmp_path, "trainer.max_steps=2", run="first")
    shutil.move(tmp_path / "first", tmp_path / "moved")
    _train(tmp_path, "trainer.max_steps=2", run="moved")  # the same run in another place: resumes, no refusal


def test_relative_data_root_is_recorded_absolute(tmp_path, monkeypatch):
    from lct.train.run import record_data_root

    monkeypatch.chdir(tmp_path)
    cfg = _cfg(tmp_path, "data=folder", "data.root=latents/mine")
    record_data_root(cfg)
    assert cfg.data.root == str(tmp_path / "latents" / "mine")
    absolute = _cfg(tmp_path, "data=folder", "data.root=/data/x")
    record_data_root(absolute)
    assert absolute.data.root == "/data/x"


# --- the run directory itself -------------------------------------------------------------------------------


def test_an_unwritable_run_dir_is_one_line(tmp_path):
    argv = [sys.executable, "-m", "lct.train", *TINY, "logger=none", "hydra.run.dir=/proc/x"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=_env())
    assert done.returncode == 2, done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "/proc/x" in lines[0] and "hydra.run.dir" in lines[0]
