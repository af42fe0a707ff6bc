"""Issue 39: a stop signal ends a run with a checkpoint at the current step and exit status 143, the same command
resumes it bit-exact, and no DDP rank outlives its launcher."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lct.io.ckpt_file import read_checkpoint_file
from lct.train.preemption import EXIT_PREEMPTED

SRC = str(Path(__file__).resolve().parents[1] / "src")
TINY = [
    "data=synthetic",
    "data.batch_size=8",
    "backbone=unet_tiny",
    "callbacks.checkpoint.every_n_train_steps=20",
    "callbacks.sample_grid=null",
    "callbacks.digits=null",
    "trainer.enable_progress_bar=false",
    "logger=none",
]


def _env():
    env = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "LCT_DEBUG")}
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _start(run: Path, *overrides) -> subprocess.Popen:
    argv = [sys.executable, "-m", "lct.train", *TINY, f"hydra.run.dir={run}", *overrides]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 240) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"the run ended before {path} appeared: {proc.communicate()[1][-2000:]}"
        assert time.monotonic() < end, f"{path} did not appear within {timeout} s"
        time.sleep(0.2)


def _step(ckpt: Path) -> int:
    return int(read_checkpoint_file(ckpt)["global_step"])


def _state(ckpt: Path) -> dict:
    """What training continues from: module state (student, EMAs, objective) and the optimizer's moments."""
    full = read_checkpoint_file(ckpt)
    return {**full["state_dict"], "optimizer_states": full["optimizer_states"]}


def _same(a, b) -> bool:
    """Bitwise equality of nested state (tensors, dicts of generator and c-schedule states, scalars)."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(map(_same, a, b))
    return a == b


def test_sigterm_checkpoints_the_current_step_exits_143_and_the_rerun_resumes_bit_exact(tmp_path):
    steps = ["trainer.max_steps=60"]
    proc = _start(tmp_path / "a", *steps)
    _wait_for(tmp_path / "a" / "checkpoints" / "epoch=0-step=20.ckpt", proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_PREEMPTED, err[-2000:]
    last = tmp_path / "a" / "checkpoints" / "last.ckpt"
    k = _step(last)
    assert 20 <= k < 60
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert lines == [
        f"error: preempted at step {k} by a stop signal; checkpoint {last} written; rerun the same command to resume"
    ]
    assert "Traceback" not in err
    assert not list((tmp_path / "a").glob("samples/*"))  # no end-of-run sampling pass after the signal

    again = _start(tmp_path / "a", *steps)
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err[-2000:]
    assert f"resuming from {last} (global step {k}," in out + err
    assert _step(last) == 60

    whole = _start(tmp_path / "b", *steps)
    _, err = whole.communicate(timeout=300)
    assert whole.returncode == 0, err[-2000:]
    resumed, straight = _state(last), _state(tmp_path / "b" / "checkpoints" / "last.ckpt")
    assert resumed.keys() == straight.keys()
    assert [key for key in straight if not _same(resumed[key], straight[key])] == []  # bit-exact: student, EMAs, state


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")  # a zombie has ended


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads child PIDs from Linux's /proc")
def test_sigterm_to_a_ddp_launcher_stops_every_rank_with_a_checkpoint_and_leaves_no_process(tmp_path):
    proc = _start(tmp_path / "run", "trainer=ddp_cpu", "trainer.max_steps=100000")
    _wait_for(tmp_path / "run" / "checkpoints" / "epoch=0-step=20.ckpt", proc)
    ranks = [pid for pid in _children(proc.pid) if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text()]
    assert len(ranks) == 2
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_PREEMPTED, err[-2000:]
    end = time.monotonic() + 10
    while any(map(_alive, ranks)) and time.monotonic() < end:
        time.sleep(0.2)
    assert not any(map(_alive, ranks)), "a rank outlived its launcher"
    k = _step(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert k >= 20 and f"error: preempted at step {k} by a stop signal" in err


def test_slurm_requeue_signal_checkpoints_and_requeues_the_job(tmp_path):
    fake = tmp_path / "bin" / "scontrol"  # records its arguments instead of talking to a SLURM controller
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/scontrol.args\n')
    fake.chmod(0o755)
    env = {**_env(), "SLURM_JOB_ID": "4242", "PATH": f"{fake.parent}{os.pathsep}{os.environ['PATH']}"}
    argv = [sys.executable, "-m", "lct.train", *TINY, f"hydra.run.dir={tmp_path / 'run'}", "trainer.max_steps=100000"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    _wait_for(tmp_path / "run" / "checkpoints" / "epoch=0-step=20.ckpt", proc)
    proc.send_signal(signal.SIGUSR1)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_PREEMPTED, err[-2000:]
    assert _step(tmp_path / "run" / "checkpoints" / "last.ckpt") >= 20
    assert (tmp_path / "scontrol.args").read_text().split() == ["requeue", "4242"]


def test_a_run_in_another_thread_keeps_the_process_signal_handlers():
    import threading

    from lct.train.preemption import install_handlers

    before = signal.getsignal(signal.SIGTERM)
    found = {}
    worker = threading.Thread(target=lambda: found.update(previous=install_handlers()))
    worker.start()
    worker.join()
    assert found["previous"] == {} and signal.getsignal(signal.SIGTERM) is before
