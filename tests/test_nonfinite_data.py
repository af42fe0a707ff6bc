"""Issue 39 items 5 and 10: non-finite latents are found before training (named, cached, refused or skipped
with data.skip_nonfinite=true), and the built-in cache's lock leaves nothing in a user's folder."""

import fcntl
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lct.core import PAPER
from lct.data import LatentDataModule, scan
from lct.data.builtin import MARKER, ensure_builtin, root_lock
from lct.data.encoding import write_array_root
from lct.errors import LctError

SRC = str(Path(__file__).resolve().parents[1] / "src")


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path, monkeypatch):
    """The scan cache of user roots goes to lct's cache directory: a per-test one here."""
    monkeypatch.setenv("LCT_CACHE_DIR", str(tmp_path / "cache"))


def _root(root: Path, bad_rows=(2, 5)) -> Path:
    """16 latents in two shards of 8, written finite (so mu/s are), then rows of shard 1 set to NaN/inf."""
    rng = np.random.default_rng(0)
    write_array_root(root, [rng.standard_normal((8, 4, 8, 8)).astype(np.float32) for _ in range(2)])
    shard = root / "shards" / "000001.npy"
    z = np.load(shard)
    for k, row in enumerate(bad_rows):
        z[row, k % 4, 1, 1] = np.nan if k % 2 == 0 else np.inf
    np.save(shard, z)
    return root


def _files(root: Path) -> dict:
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_scan_names_shard_and_rows_once_then_reads_the_cache(tmp_path, monkeypatch):
    root = _root(tmp_path / "lat")
    before = _files(root)
    meta = json.loads((root / "metadata.json").read_text())
    with pytest.raises(
        LctError, match=r"lat/shards/000001\.npy rows 2, 5 \(2 of 16 latents\).*data\.skip_nonfinite=true"
    ):
        LatentDataModule(str(root), batch_size=4, sigma_data=PAPER.sigma_data).prepare_data()
    assert _files(root) == before  # a user's root is only read: the cache lives in lct's cache directory
    assert [p.name for p in (tmp_path / "cache" / "nonfinite").iterdir()] == [scan.cache_path(root).name]

    def no_read(path):
        raise AssertionError(f"{path} was read again")

    monkeypatch.setattr(scan, "shard_bad_rows", no_read)
    assert scan.scan_nonfinite(root, meta) == {"shards/000001.npy": [2, 5]}  # from the cache
    monkeypatch.undo()
    monkeypatch.setenv("LCT_CACHE_DIR", str(tmp_path / "cache"))
    z = np.load(root / "shards" / "000001.npy")
    z[5] = 0.0  # a changed shard (new size or mtime) is scanned again
    np.save(root / "shards" / "000001.npy", z)
    os.utime(root / "shards" / "000001.npy", ns=(1, 1))
    assert scan.scan_nonfinite(root, meta) == {"shards/000001.npy": [2]}


def test_unwritable_cache_scans_without_caching_and_leaves_no_temporary(tmp_path, monkeypatch, caplog):
    root = _root(tmp_path / "lat", bad_rows=(7,))
    meta = json.loads((root / "metadata.json").read_text())

    def read_only(src, dst):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(scan.os, "replace", read_only)
    with caplog.at_level(logging.INFO, logger="lct.data.scan"):
        assert scan.scan_nonfinite(root, meta) == {"shards/000001.npy": [7]}
    assert "not cached" in caplog.text
    assert list((tmp_path / "cache" / "nonfinite").iterdir()) == []


def test_builtin_root_caches_beside_its_shards_but_never_over_a_foreign_file(tmp_path):
    root = _root(tmp_path / "builtin", bad_rows=())
    (root / MARKER).write_text(json.dumps({"builtin": "mnist"}))
    meta = json.loads((root / "metadata.json").read_text())
    assert scan.scan_nonfinite(root, meta) == {}
    cached = json.loads((root / scan.SCAN).read_text())
    assert cached["format"] == scan.FORMAT and set(cached["shards"]) == {"shards/000000.npy", "shards/000001.npy"}
    (root / scan.SCAN).write_text("my notes")  # a file of that name lct did not write is left alone
    assert scan.scan_nonfinite(root, meta) == {}
    assert (root / scan.SCAN).read_text() == "my notes"
    assert not list(root.glob(".*.tmp"))


def test_skip_nonfinite_logs_and_leaves_the_rows_out_of_sampling(tmp_path, caplog):
    root = _root(tmp_path / "lat")
    dm = LatentDataModule(str(root), batch_size=2, skip_nonfinite=True, sigma_data=PAPER.sigma_data)
    with caplog.at_level(logging.WARNING, logger="lct.data.scan"):
        dm.prepare_data()
        dm.setup("fit")
    assert "leaving 2 non-finite latents out of sampling" in caplog.text and "000001.npy rows 2, 5" in caplog.text
    assert len(dm.dataset) == dm.num_items == 14
    batches = iter(dm.train_dataloader())
    seen = torch.cat([next(batches) for _ in range(3 * 7)])  # three epochs of 7 batches
    assert torch.isfinite(seen).all() and len(seen) == 42
    assert len(torch.unique(seen[:14], dim=0)) == 14  # one epoch draws every kept latent once


def _cli(*args, cwd=None):
    env = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "LCT_DEBUG")}
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=300, env=env, cwd=cwd)


TRAIN = [
    "backbone=unet_tiny",
    "trainer.enable_progress_bar=false",
    "logger=none",
    "callbacks.sample_grid=null",
    "callbacks.digits=null",
    "data.batch_size=4",
    "trainer.max_steps=2",
]


def test_train_refuses_a_nan_row_in_one_line_before_any_work(tmp_path):
    root = _root(tmp_path / "lat")
    out = _cli("lct.train", "data=folder", f"data.root={root}", *TRAIN, f"hydra.run.dir={tmp_path}/run")
    errors = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert len(errors) == 1 and f"{root}/shards/000001.npy rows 2, 5" in errors[0]
    assert "data.skip_nonfinite=true" in errors[0] and not (tmp_path / "run" / "checkpoints").exists()


def test_train_with_skip_nonfinite_logs_the_rows_and_finishes(tmp_path):
    root = _root(tmp_path / "lat")
    args = ["data=folder", f"data.root={root}", "data.skip_nonfinite=true", *TRAIN, f"hydra.run.dir={tmp_path}/run"]
    out = _cli("lct.train", *args)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "leaving 2 non-finite latents out of sampling" in out.stderr + out.stdout
    assert "non-finite values" not in out.stderr + out.stdout  # no batch drew a NaN row (the step-wise skip)
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()


def test_refused_builtin_root_leaves_no_lock_in_the_users_folder(tmp_path):
    root = _root(tmp_path / "mine", bad_rows=())
    before = _files(root)
    with pytest.raises(LctError, match="not lct's built-in mnist cache"):
        ensure_builtin(root, "mnist")
    assert _files(root) == before and not (root / ".lock").exists()


def test_root_lock_excludes_a_second_holder_and_writes_nothing(tmp_path):
    with root_lock(tmp_path):
        fd = os.open(tmp_path, os.O_RDONLY)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
    fd = os.open(tmp_path, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released on exit
    os.close(fd)
    assert list(tmp_path.iterdir()) == []
