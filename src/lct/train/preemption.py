"""Preemption: a stop signal ends a run at the current step with a checkpoint and exit status 143.

SIGTERM (a scheduler's preemption or `kill`), and under SLURM SIGUSR1/SIGUSR2 (the requeue signals of Lightning's
SLURM environment and of hydra/launcher=slurm's submitit; the job is requeued after the checkpoint) only set a
flag; the run stops at the end of the step that sees it. Under DDP the flag travels with the step's finiteness
all-reduce (`ConsistencyModule._any_rank`), so every rank stops after the same step and the checkpoint is
consistent. Lightning's own SIGTERM handler is replaced while training: it ends the run without a checkpoint,
exits 0, and runs a collective inside the signal handler. The launching process passes the signal on to its
ranks, and a rank started by a launcher dies with it (`die_with_parent`), so no rank outlives its launcher.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import subprocess
import threading

import torch
from lightning.pytorch import Callback
from lightning.pytorch.utilities import rank_zero_only

from lct.errors import LctError

log = logging.getLogger(__name__)

EXIT_PREEMPTED = 143  # 128 + SIGTERM: what a shell reports for a process ended by SIGTERM
PREEMPTED_KEY = "lct/preempted_step"  # in trainer.callback_metrics, which ddp_spawn hands back to the launcher
_PR_SET_PDEATHSIG = 1  # linux/prctl.h
REQUEUE_SIGNALS = (signal.SIGUSR1, signal.SIGUSR2)  # sbatch --signal: a time limit or preemption is near


class Preempted(LctError):
    """The run stopped on a signal after writing a checkpoint; the same command resumes it."""

    exit_code = EXIT_PREEMPTED


class _StopRequest:
    """The signal this process received (None: none); children are the ranks to pass it on to."""

    def __init__(self):
        self.signum: int | None = None
        self.children: list = []  # Popen-like objects with send_signal (Lightning's subprocess launcher)


STOP = _StopRequest()


def stop_signals() -> list[int]:
    """SIGTERM, and inside a SLURM job its requeue signals: SIGUSR1 (Lightning's) and SIGUSR2 (submitit's)."""
    return [signal.SIGTERM, *REQUEUE_SIGNALS] if os.environ.get("SLURM_JOB_ID") else [signal.SIGTERM]


def request_stop(signum, frame=None) -> None:
    """Signal handler: remember the signal and pass it on to this process's ranks; nothing else."""
    STOP.signum = signum
    for child in multiprocessing.active_children():  # ddp_spawn's ranks
        _send(child.pid, signum)
    for proc in STOP.children:  # trainer=ddp: the ranks rank 0 launched
        _send(proc.pid, signum)


def _send(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def install_handlers() -> dict:
    """Route the stop signals to request_stop; returns the previous handlers (restore_handlers takes them). Only the
    main thread may set handlers: a run in another thread (a threading launcher) keeps the process's own."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {s: signal.signal(s, request_stop) for s in stop_signals()}


def restore_handlers(previous: dict) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


def die_with_parent() -> None:
    """Ask Linux to send this process SIGTERM when its parent exits (a launcher that was SIGKILLed)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the launcher's forwarding still applies
        pass


def preempted_step(trainer) -> int | None:
    """The step a run stopped at on a stop signal (also in the launcher of ddp_spawn), else None."""
    value = trainer.callback_metrics.get(PREEMPTED_KEY)
    return None if value is None else int(value)


def requeue_slurm_job() -> None:
    """`scontrol requeue` this SLURM job (after a checkpoint on SLURM's requeue signal); failures are logged."""
    job = os.environ.get("SLURM_JOB_ID")
    if os.environ.get("SLURM_ARRAY_JOB_ID"):
        job = f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ.get('SLURM_ARRAY_TASK_ID', '')}"
    try:
        done = subprocess.run(["scontrol", "requeue", str(job)], capture_output=True, text=True, timeout=60)
        ok, why = done.returncode == 0, done.stderr.strip()
    except (OSError, subprocess.TimeoutExpired) as err:
        ok, why = False, str(err)
    (log.info if ok else log.warning)("scontrol requeue %s: %s", job, "requeued" if ok else f"failed ({why})")


class Preemption(Callback):
    """Stop every rank after the step that sees a stop signal; FinalCheckpoint then writes last.ckpt there."""

    def setup(self, trainer, pl_module, stage: str) -> None:
        if multiprocessing.parent_process() is not None or os.environ.get("LOCAL_RANK", "0") != "0":
            die_with_parent()  # a rank started by a launcher (ddp_spawn, or trainer=ddp's other ranks)

    def on_train_start(self, trainer, pl_module) -> None:
        # After Lightning registered its own handlers (Trainer._run): replace them for the stop signals.
        # Lightning's teardown puts back the handlers it found, so nothing is restored here.
        STOP.children = list(getattr(trainer.strategy.launcher, "procs", None) or [])
        install_handlers()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not getattr(pl_module, "stop_now", False) or trainer.should_stop:
            return
        step = trainer.global_step
        pl_module.preempted_step = step
        trainer.callback_metrics[PREEMPTED_KEY] = torch.tensor(step)
        trainer.should_stop = True
        name = signal.Signals(STOP.signum).name if STOP.signum else "a stop signal on another rank"
        rank_zero_only(log.warning)("%s received: stopping after step %d with a checkpoint", name, step)
