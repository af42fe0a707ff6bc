"""One log line per fact: a tiny `python -m lct.train` run prints Lightning's model summary once (on the console and
in the run's log) and no deprecation warning of a dependency (lct.cli.logs)."""

import os
import subprocess
import sys
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[1] / "src")


def test_a_tiny_run_logs_each_fact_once(tmp_path):
    run = tmp_path / "run"
    env = {**os.environ, "LCT_CACHE_DIR": str(tmp_path / "cache"), "PYTHONPATH": SRC}
    argv = [sys.executable, "-m", "lct.train", "data=synthetic", "trainer.max_steps=2", "data.batch_size=8"]
    argv += ["logger=none", "trainer.enable_progress_bar=false", f"hydra.run.dir={run}"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    console = out.stdout + out.stderr
    assert console.count("| Name ") == 1, console  # the model summary's header
    assert console.count("Seed set to 0") == 1 and console.count("`Trainer.fit` stopped") == 1
    assert "LeafSpec" not in console and "is deprecated" not in console, console
    (log,) = run.glob("*.log")  # Hydra's run log keeps Lightning's lines too, once
    assert log.read_text().count("| Name ") == 1 and "Seed set to 0" in log.read_text()
