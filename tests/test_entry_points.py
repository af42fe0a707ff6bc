"""Entry points: each console script of pyproject.toml calls the same function as `python -m lct.<command>`, the
modules stay a few lines, and `lct-train` composes the same config as `python -m lct.train` from any directory."""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# As a user runs them: without HYDRA_FULL_ERROR / LCT_DEBUG (tests/conftest.py sets one), which keep tracebacks.
ENV = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "LCT_DEBUG")}


def console_scripts() -> dict[str, str]:
    """pyproject.toml's [project.scripts]: name -> "module:function"."""
    text = ROOT.joinpath("pyproject.toml").read_text().split("[project.scripts]", 1)[1].split("\n[", 1)[0]
    return dict(re.findall(r'^([\w-]+) = "([\w.:]+)"', text, flags=re.M))


SCRIPTS = console_scripts()
COMMANDS = ["train", "sample", "evaluate", "encode", "fit_c", "analyze", "report"]


def test_every_command_has_a_console_script():
    assert SCRIPTS == {f"lct-{c.replace('_', '-')}": f"lct.cli.{c}:entry" for c in COMMANDS}


@pytest.mark.parametrize("command", COMMANDS)
def test_the_module_and_the_script_call_one_function(command):
    target = importlib.import_module(f"lct.cli.{command}").entry
    shim = "lct.train.__main__" if command == "train" else f"lct.{command}"
    assert importlib.import_module(shim).entry is target
    source = importlib.util.find_spec(shim).origin
    assert len(Path(source).read_text().splitlines()) <= 10, f"{source} is more than a call of lct.cli.{command}"


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=120)


def test_lct_train_composes_what_python_m_lct_train_does(tmp_path):
    script = BIN / "lct-train"
    assert script.is_file(), f"{script} is missing: `make install` (pip install -e .) writes the console scripts"
    overrides = ["--cfg", "job", "data=synthetic", "backbone=unet_tiny", "trainer.max_steps=3"]
    by_script = run([str(script), *overrides], tmp_path)  # another directory: conf/ comes from the package
    by_module = run([sys.executable, "-m", "lct.train", *overrides], tmp_path)
    assert by_script.returncode == 0 and by_module.returncode == 0, by_script.stderr + by_module.stderr
    assert "max_steps: 3" in by_script.stdout and by_script.stdout == by_module.stdout
    assert not any(tmp_path.iterdir())  # --cfg job composes only: no run directory


def test_lct_train_without_its_config_is_one_line(tmp_path):
    out = subprocess.run(
        [str(BIN / "lct-train")],
        cwd=tmp_path,
        env={**ENV, "LCT_CONF_DIR": str(tmp_path / "nowhere")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.startswith("error: no lct config in") and "LCT_CONF_DIR" in out.stderr


def test_a_console_script_reports_an_lct_error_as_one_line(tmp_path):
    out = run([str(BIN / "lct-sample"), str(tmp_path / "missing.ckpt"), "--out", str(tmp_path / "s")], tmp_path)
    assert out.returncode == 2 and out.stderr.startswith("error: ") and "missing.ckpt" in out.stderr
    assert "Traceback" not in out.stderr
