"""A user's own project extends lct without forking it: docs/architecture.md's "How to extend" files (a metric,
a c schedule that reads K, a coupling, a backbone and a dataset, each one Python file plus one YAML) are written to
a folder outside src/lct and its commands run: lct.train selects all five through hydra.searchpath, lct.sample
draws from the checkpoint."""

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

DOC = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"
# "`myproject/welsch.py`:" or "`myconf/metric/welsch.yaml`:", a blank line, then the file as a fenced block.
FILE = re.compile(r"^`((?:myproject|myconf)/[\w/]+\.(?:py|yaml))`:\n\n```(?:python|yaml)\n(.*?)^```$", re.M | re.S)
KINDS = {"metric": "method.metric", "c_schedule": "method.c", "coupling": "method.coupling"}
KINDS |= {"backbone": "backbone", "data": "data"}


def extend_section() -> str:
    text = DOC.read_text()
    start = text.index("## How to extend")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


def write_project(root: Path) -> dict[str, str]:
    """The section's files under root; returns {relative path: text}."""
    files = dict(FILE.findall(extend_section()))
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return files


def commands() -> str:
    (block,) = re.findall(r"### Run them\n.*?```bash\n(.*?)```", extend_section(), re.S)
    return block


def test_the_docs_add_each_kind_as_one_file_and_one_yaml_outside_lct(tmp_path):
    files = write_project(tmp_path)
    groups = {Path(rel).parts[1] for rel in files if rel.startswith("myconf/")}
    assert groups == set(KINDS)
    assert len([rel for rel in files if rel.endswith(".py")]) == len(KINDS) == len(files) // 2
    for rel in files:  # every YAML points at the project's own code, none at lct's
        if rel.endswith(".yaml"):
            assert OmegaConf.load(tmp_path / rel)._target_.startswith("myproject.")


def test_a_project_outside_lct_trains_and_samples_with_its_own_parts(tmp_path):
    write_project(tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HYDRA_FULL_ERROR")}
    env |= {"PATH": str(Path(sys.executable).parent) + os.pathsep + env["PATH"], "LCT_CACHE_DIR": str(tmp_path / "c")}
    out = subprocess.run(
        ["bash", "-ec", commands()], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-4000:]
    run = tmp_path / "runs" / "mine"
    cfg = OmegaConf.load(run / "config_resolved.yaml")
    for group, key in KINDS.items():
        assert OmegaConf.select(cfg, key)._target_.startswith("myproject."), (group, key)
    with open(next(run.rglob("metrics.csv"))) as f:
        c = [float(row["train/c"]) for row in csv.DictReader(f) if row.get("train/c")]
    # K = 2 reached the schedule: c_start at step 0, half-way down the cosine at step 1.
    assert c == [pytest.approx(0.1), pytest.approx(0.055)]
    samples = np.load(run / "samples" / "samples.npz", allow_pickle=False)
    # Decoded by the dataset's codec (the built-in MNIST VAE): 4 32x32 images (stored as RGB) from finite latents.
    assert samples["images"].shape == (4, 32, 32, 3) and samples["images"].dtype == np.uint8
    assert np.isfinite(samples["latents"]).all() and samples["latents"].shape == (4, 4, 8, 8)
    assert (run / "samples" / "grid.png").stat().st_size > 0
