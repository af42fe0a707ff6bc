"""experiments/objectives/sweeps.sh: every row it names builds a valid run (a typo in a row would otherwise surface
hours into a sweep), the step suffixes set the steps, and an unknown row is refused."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from omegaconf import OmegaConf
from train_utils import compose_cfg

ROOT = Path(__file__).resolve().parents[1]
SWEEPS = ROOT / "experiments" / "objectives" / "sweeps.sh"
ROWS = ["meanflow", "meanflow_parts", "scm_w150", "scm_parts"]
ROWS += [f"{kind}_{part}" for kind in ("meanflow", "scm") for part in ("cauchy", "ot", "nsln")]


def row_command(row: str) -> list[str]:
    """The lct.train arguments `sweeps.sh train ROW` would run (PY=echo prints them instead)."""
    env = {**os.environ, "PY": "echo"}
    out = subprocess.run(["bash", str(SWEEPS), "train", row], env=env, capture_output=True, text=True, check=True)
    return out.stdout.split()


def run_overrides(args: list[str]) -> list[str]:
    """The run's own overrides: without the multirun flag, the seed sweep and the launcher's hydra keys."""
    return [a for a in args if "=" in a and not a.startswith(("hydra", "seed="))]


def target(cfg, group: str) -> str:
    """The class a method group builds ("" when the experiment switches the group off)."""
    return str(OmegaConf.select(cfg, f"method.{group}._target_", default=""))


@pytest.mark.parametrize("row", ROWS)
def test_row_builds(tmp_path, row):
    from lct.train.run import build
    from lct.train.validate import validate_config

    args = row_command(row)
    assert args[:3] == ["-m", "lct.train", "-m"] and "seed=0,1,2" in args
    overrides = run_overrides(args)
    kind = row.split("_")[0]
    assert f"experiment={kind}" in overrides
    cfg = compose_cfg(tmp_path, [*overrides, "trainer.max_steps=2"])
    validate_config(cfg)
    module, *_ = build(cfg)
    assert cfg.method.kind == kind
    assert type(module.objective).__module__.startswith(f"lct.core.{kind}")
    part = row.split("_", 1)[1] if "_" in row else ""
    parts = {"cauchy", "ot", "nsln"} if part == "parts" else {part}
    assert target(cfg, "metric").endswith(".Cauchy") == ("cauchy" in parts)
    assert target(cfg, "coupling").endswith(".MinibatchOT") == ("ot" in parts)
    assert (cfg.backbone.norm == "nsln") == ("nsln" in parts)


@pytest.mark.parametrize("suffix, steps", [("_6k", "6000"), ("_1k1", "1100"), ("", None)])
def test_step_suffixes(suffix, steps):
    overrides = run_overrides(row_command("meanflow" + suffix))
    got = [a.split("=", 1)[1] for a in overrides if a.startswith("trainer.max_steps=")]
    assert got == ([steps] if steps else [])


def test_unknown_row_is_refused():
    env = {**os.environ, "PY": "echo"}
    out = subprocess.run(["bash", str(SWEEPS), "train", "meanflow_bogus"], env=env, capture_output=True, text=True)
    assert out.returncode == 2 and "unknown row meanflow_bogus" in out.stderr
