"""The run directory: created (or refused) in one line, and one run at a time in it (lct.cli.train.CheckRunDir
checks Hydra's before Hydra makes it).

One run per run directory: an exclusive lock on <run dir>/.lct.lock, held for the whole run. The lock is
`fcntl.flock` on the file, so the kernel releases it when its holder exits, however it exits: a lock whose holder
was killed is free, and the next run takes it over, saying whose it was. The file records the holder (PID, host,
start time) for the message a second run prints.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import time
from pathlib import Path

from lct.errors import LctError

log = logging.getLogger(__name__)

LOCK_NAME = ".lct.lock"


def make_run_dir(out: Path, key: str = "hydra.run.dir") -> Path:
    """Create the run directory (and its parents) and check it is writable; LctError naming it and `key`."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as err:
        raise LctError(
            f"cannot write the run directory {out} ({err.strerror or type(err).__name__}); point {key}=... at a "
            "writable folder"
        ) from None
    return out


class RunDirLock:
    """`with RunDirLock(run_dir):` holds the run directory's lock, or raises LctError naming its holder."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK_NAME
        self._fd: int | None = None

    def __enter__(self) -> RunDirLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise LctError(
                f"the run directory {self.path.parent} is in use by another lct run ({holder}); wait for it to "
                "finish or stop it, or give this run its own directory (hydra.run.dir=...)"
            ) from None
        previous = _read_holder(fd)
        if previous:  # a holder that ended without releasing (killed): the kernel freed its lock
            log.warning("took over the lock of %s: that run no longer holds it (it was killed or crashed)", previous)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on host {socket.gethostname()} since {time.ctime()}\n".encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)  # empty: released by a run that ended, not taken over
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def _read_holder(fd: int) -> str:
    return os.pread(fd, 512, 0).decode(errors="replace").strip()
