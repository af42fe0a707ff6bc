"""Gather the runs of benchmarks/gpu_numerics.sh into one JSON: per run, the logged loss curve, the digit
metrics, the last step reached, non-finite counts, exit status and the tail of its log.

    python benchmarks/collect_numerics.py RUNS_DIR OUT.json
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path


def read_run(run: Path) -> dict:
    rows = []
    for path in sorted(run.glob("csv/version_*/metrics.csv")):
        with path.open() as f:
            rows += list(csv.DictReader(f))
    series: dict[str, list] = {}
    for r in rows:
        for key, value in r.items():
            if key != "step" and value not in ("", None):
                series.setdefault(key, []).append((int(float(r["step"])), float(value)))
    keep = ("train/loss", "train/nonfinite_total", "train/samples_per_s", "train/td_std", "train/c")
    out = {
        "last_step": max((s for v in series.values() for s, _ in v), default=None),
        "curves": {k: v for k, v in series.items() if k in keep or k.startswith("digits/")},
    }
    log = run.parent / f"{run.name}.log"
    out["log_tail"] = log.read_text(errors="replace").splitlines()[-15:] if log.is_file() else []
    return out


def main(runs: str, out: str) -> None:
    runs_dir = Path(runs)
    status = {}
    if (runs_dir / "status.txt").is_file():
        for line in (runs_dir / "status.txt").read_text().splitlines():
            name, _, code = line.partition(" exit ")
            status[name] = int(code)
    result = {
        run.name: {**read_run(run), "exit": status.get(run.name)}
        for run in sorted(runs_dir.iterdir())
        if run.is_dir() and run.name != "warm"
    }
    Path(out).write_text(json.dumps(result, indent=1))
    for name, r in result.items():
        digits = {k: v[-1] for k, v in r["curves"].items() if k.startswith("digits/")}
        print(name, "exit", r["exit"], "last step", r["last_step"], digits)


if __name__ == "__main__":
    main(*sys.argv[1:3])
