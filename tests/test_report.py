"""lct.report: grouping by seed, mean ± std, missing fields, unfinished runs apart, --by, --out, error lines."""

from __future__ import annotations

import csv
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from lct.cli import report

ROOT = Path(__file__).resolve().parents[1]
RECORDS = ROOT / "experiments" / "ablation" / "records"
CHOICES = {"experiment": "ilct", "data": "mnist", "backbone": "unet_tiny", "coupling": "none", "norm": None}


def write(run_dir: Path, seed: int, fid: float | None = None, loss: float = 1.0, **fields) -> Path:
    """A record.json as lct.train writes it (the fields a test does not set: a finished 30-step run)."""
    choices = {**CHOICES, **fields.pop("choices", {})}
    record = {
        "schema": 1,
        "experiment": choices["experiment"],
        "choices": choices,
        "overrides": [f"experiment={choices['experiment']}", f"seed={seed}", *fields.pop("extra", [])],
        "seed": seed,
        "config": {"seed": seed, "optimizer": {"lr": 1e-3}, "paths": {"output_dir": str(run_dir)}},
        "status": "finished",
        "error": None,
        "steps": {"done": 30, "total": 30},
        "train_loss": loss,
        "metrics": {"last": {"digits/fid_1nfe": {"value": 10.0 * (seed + 1), "step": 30}}, "best": {}},
        "curves": {"digits/fid_1nfe": [[10, 50.0 + seed], [30, 10.0 * (seed + 1)]], "train/loss": [[30, loss]]},
        "eval": {"inception_1000": {"fid_1nfe": fid, "num_samples": 1000}} if fid is not None else {},
        "sample_grids": [],
        **fields,
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "record.json").write_text(json.dumps(record))
    return run_dir


def sweep(tmp_path: Path) -> Path:
    """Two experiments x two seeds, hand numbers: ilct FID 50, 54; slct_noot FID 40, 41."""
    s = tmp_path / "sweep"
    for i, (exp, fid) in enumerate([("ilct", 50.0), ("ilct", 54.0), ("slct_noot", 40.0), ("slct_noot", 41.0)]):
        write(s / str(i), seed=i % 2, fid=fid, loss=2.0 + i, choices={"experiment": exp})
    return s


def table(text: str) -> list[dict]:
    """The first Markdown table of `text` as dicts."""
    lines = [ln for ln in text.split("\n\n")[0].splitlines() if ln.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    return [dict(zip(header, [c.strip() for c in ln.strip("|").split("|")], strict=True)) for ln in lines[2:]]


def test_groups_runs_that_differ_only_in_seed(tmp_path):
    rows = table(report.main([str(sweep(tmp_path))]))
    assert [(r["experiment"], r["n"], r["seeds"]) for r in rows] == [("ilct", "2", "0,1"), ("slct_noot", "2", "0,1")]
    assert "coupling" not in rows[0]  # the same in every group: not a column


def test_mean_and_std_against_hand_numbers(tmp_path):
    rows = table(report.main([str(sweep(tmp_path))]))
    assert rows[0]["inception_1000/fid_1nfe"] == f"52.0 ± {statistics.stdev([50, 54]):.1f}" == "52.0 ± 2.8"
    assert rows[1]["inception_1000/fid_1nfe"] == "40.5 ± 0.7"
    assert rows[0]["train/loss"] == "2.50 ± 0.71"  # losses 2, 3
    assert rows[1]["digits/fid_1nfe"] == "15.0 ± 7.1"  # in-loop last: 10, 20


def test_missing_fields_print_a_dash(tmp_path):
    run = write(tmp_path / "old" / "a", seed=0, fid=None)
    rec = json.loads((run / "record.json").read_text())
    for key in ("metrics", "curves", "train_loss", "eval", "schema"):
        rec.pop(key)
    (run / "record.json").write_text(json.dumps(rec))
    write(tmp_path / "old" / "b", seed=0, fid=45.0, choices={"experiment": "slct"})
    rows = table(report.main([str(tmp_path / "old")]))
    assert rows[0]["experiment"] == "ilct" and rows[0]["inception_1000/fid_1nfe"] == "—"
    assert rows[0]["train/loss"] == "—" and rows[1]["train/loss"] == "1.00"


def test_partly_scored_group_says_how_many(tmp_path):
    write(tmp_path / "s" / "a", seed=0, fid=50.0)
    write(tmp_path / "s" / "b", seed=1, fid=None)
    assert table(report.main([str(tmp_path / "s")]))[0]["inception_1000/fid_1nfe"] == "50.0 (1/2)"


def test_unfinished_and_failed_runs_are_listed_apart(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # run dirs are shown relative to the working directory
    s = sweep(tmp_path).relative_to(tmp_path)
    write(s / "4", seed=2, fid=1.0, status="failed", error="LctError: bad data", steps={"done": 3, "total": 30})
    write(s / "5", seed=3, fid=1.0, status="running", steps={"done": 10, "total": 30})
    text = report.main([str(s)])
    assert table(text)[0]["n"] == "2" and table(text)[0]["inception_1000/fid_1nfe"] == "52.0 ± 2.8"  # not averaged in
    apart = text.split("Unfinished or failed (not averaged):")[1]
    assert "| run dir | status | steps | train/loss | error |" in apart  # the first metric column, unaveraged
    assert f"| {s / '4'} | failed | 3/30 | 1.00 | LctError: bad data |" in apart
    assert f"| {s / '5'} | running | 10/30 | 1.00 | — |" in apart


def test_by_groups_by_the_named_keys_and_flags_what_it_merges(tmp_path, capsys):
    s = sweep(tmp_path)
    write(s / "4", seed=0, fid=60.0, choices={"experiment": "ilct", "coupling": "ot"})
    rows = table(report.main([str(s), "--by", "experiment"]))
    assert [(r["experiment"], r["n"]) for r in rows] == [("ilct", "3"), ("slct_noot", "2")]
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "experiment=ilct differ in coupling ('none', 'ot')" in err[0]
    rows = table(report.main([str(s), "--by", "coupling,optimizer.lr"]))
    assert [(r["coupling"], r["optimizer.lr"], r["n"]) for r in rows] == [("none", "0.001", "4"), ("ot", "0.001", "1")]


def test_config_difference_beyond_the_overrides_is_flagged(tmp_path, capsys):
    write(tmp_path / "s" / "a", seed=0, fid=50.0)
    run = write(tmp_path / "s" / "b", seed=1, fid=52.0)
    rec = json.loads((run / "record.json").read_text())
    rec["config"]["optimizer"]["lr"] = 2e-3  # e.g. another lct version's default
    (run / "record.json").write_text(json.dumps(rec))
    report.main([str(tmp_path / "s")])
    assert "differ in optimizer.lr (0.001, 0.002)" in capsys.readouterr().err


def test_path_overrides_do_not_split_seeds(tmp_path):
    for seed in (0, 1):
        write(tmp_path / "s" / str(seed), seed=seed, fid=50.0, extra=[f'init_from="/ckpts/seed{seed}/last.ckpt"'])
    assert table(report.main([str(tmp_path / "s")]))[0]["n"] == "2"


def test_out_writes_md_csv_and_pngs(tmp_path, capsys):
    s = sweep(tmp_path)
    grid = tmp_path / "grid.png"
    import matplotlib.pyplot as plt

    plt.imsave(grid, [[0.0, 1.0], [1.0, 0.0]])
    rec = json.loads((s / "0" / "record.json").read_text())
    (s / "0" / "record.json").write_text(json.dumps({**rec, "sample_grids": ["../../grid.png"]}))  # relative
    out = tmp_path / "out"
    printed = report.main([str(s), "--out", str(out), "--metric", "digits/fid_1nfe,inception_1000/fid_1nfe"])
    assert (out / "report.md").read_text() == printed
    with open(out / "report.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["experiment", "n", "seeds", "digits/fid_1nfe", "inception_1000/fid_1nfe"]
    assert rows[1][-1] == "52.0 ± 2.8"
    assert (out / "digits_fid_1nfe_vs_step.png").stat().st_size > 1000 and (out / "grids.png").stat().st_size > 1000
    assert "no sample grid file for experiment=slct_noot" in capsys.readouterr().err
    # elsewhere (the runs' grids not there) an existing figure is kept, not redrawn without its groups
    before = (out / "grids.png").read_bytes()
    grid.unlink()
    report.main([str(s), "--out", str(out)])
    assert (out / "grids.png").read_bytes() == before
    assert "grids.png kept as it was: drawn here it would lack 2 group(s)" in capsys.readouterr().err


def cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "LCT_DEBUG": "0", "HYDRA_FULL_ERROR": "0"}
    return subprocess.run([sys.executable, "-m", "lct.report", *args], capture_output=True, text=True, env=env)


@pytest.mark.parametrize("case", ["empty", "corrupt", "metric", "by"])
def test_bad_input_is_one_line_exit_2(tmp_path, case):
    s = sweep(tmp_path)
    if case == "corrupt":
        (s / "1" / "record.json").write_text("{not json")
    args = {
        "empty": [str(tmp_path / "nothing")],
        "corrupt": [str(s)],
        "metric": [str(s), "--metric", "fid_99nfe"],
        "by": [str(s), "--by", "colour"],
    }[case]
    (tmp_path / "nothing").mkdir()
    res = cli(*args)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and res.stderr.startswith("error: ")
    assert {"empty": "no record.json", "corrupt": "record.json", "metric": "fid_99nfe", "by": "colour"}[
        case
    ] in res.stderr


def test_committed_records_regenerate_the_readme_numbers():
    rows = table(report.main([str(RECORDS / "slct_noot_beta99"), str(RECORDS / "ilct")]))
    fid = {r["experiment"]: r["inception_1000/fid_1nfe"] for r in rows}
    assert fid == {"slct": "44.5 ± 0.4", "ilct": "57.9 ± 0.4"}
    assert [r["n"] for r in rows] == ["3", "3"]
    rows = table(report.main([str(RECORDS / name) for name in ("slct_20k", "slct_noot_20k", "ilct_20k")]))
    assert [(r["folder"], r["n"], r["inception_1000/fid_1nfe"]) for r in rows] == [
        ("slct_20k", "1", "28.2"),
        ("slct_noot_20k", "1", "30.5"),
        ("ilct_20k", "1", "34.9"),
    ]


def test_grid_images_are_saved_in_one_grey_channel_only_when_grey(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from PIL import Image

    from lct.io.report_plots import save_png

    for name, image, mode in (("grey", np.linspace(0, 1, 64).reshape(8, 8), "L"), ("red", [[[1, 0, 0]]], "RGBA")):
        fig, ax = plt.subplots()
        ax.imshow(image, cmap="gray")
        save_png(fig, tmp_path / f"{name}.png", dpi=50)
        plt.close(fig)
        assert Image.open(tmp_path / f"{name}.png").mode == mode
