"""Threads per run: under hydra/launcher=joblib each of n_jobs runs at once gets its share of the cores."""

from __future__ import annotations

import logging
import os

THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")

log = logging.getLogger(__name__)


def available_cores() -> int:
    """The cores this process may run on (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def threads_per_job(n_jobs: int, cores: int) -> int:
    """Threads for each of n_jobs runs at once so that n_jobs x threads <= cores (joblib's n_jobs: -1 is
    every core, -2 all but one, ...)."""
    if n_jobs < 0:
        n_jobs = cores + 1 + n_jobs
    return max(1, cores // max(1, n_jobs))


def share_cores() -> int | None:
    """Under hydra/launcher=joblib, limit this run's torch and OpenMP threads to its share of the cores."""
    from hydra.core.hydra_config import HydraConfig

    launcher = HydraConfig.get().launcher if HydraConfig.initialized() else None
    if launcher is None or not str(launcher.get("_target_", "")).endswith("JoblibLauncher"):
        return None
    import torch

    threads = threads_per_job(int(launcher.n_jobs), available_cores())
    os.environ.update({key: str(threads) for key in THREAD_ENV})  # for any process this run starts
    torch.set_num_threads(threads)
    log.info("hydra/launcher=joblib with n_jobs=%s: %d torch threads for this run", launcher.n_jobs, threads)
    return threads
