"""`python -m lct.report DIR [DIR ...]`: the runs' record.json files as one table, seeds averaged.

Runs that differ only in seed form a group (by default the key is the config-group choices plus the non-seed
command-line overrides; `--by` names the keys instead); each group is one Markdown row of mean ± std (sample std
over its runs) of every metric. Unfinished and failed runs are listed in a second table, never averaged in.
`--out DIR` also writes the tables as md and csv, a metric-vs-step plot (one mean ± std band per group) and the
groups' last sample grids side by side. Records are read by lct.io.records (one loader for every version).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lct.cli import run_cli
from lct.io.report import build, load_runs, render
from lct.io.report_plots import write_outputs


def split_keys(text: str | None) -> list[str] | None:
    """`a,b` -> ['a', 'b']; None when not given."""
    return [x.strip() for x in text.split(",") if x.strip()] if text else None


def main(argv: list[str] | None = None) -> str:
    """Parse the command line, print the tables; with --out also write files. Returns the printed text."""
    ap = argparse.ArgumentParser(prog="python -m lct.report", description=__doc__.split("\n\n")[0])
    ap.add_argument("dirs", nargs="+", metavar="DIR", help="run dirs, multirun dirs or folders holding them")
    ap.add_argument(
        "--metric",
        default=None,
        help="KEY[,KEY...]: the metric columns (default: all recorded); the first the runs logged a curve of is "
        "plotted vs step (default: digits/fid_1nfe, else train/loss)",
    )
    ap.add_argument("--by", default=None, help="GROUP[,GROUP...]: group by these choices/overrides/config keys only")
    ap.add_argument("--out", default=None, help="also write report.md, report.csv and the plots here")
    args = ap.parse_args(argv)
    metrics, by = (split_keys(a) for a in (args.metric, args.by))
    report = build(load_runs(args.dirs), by, metrics)
    for line in report["warnings"]:
        print(line, file=sys.stderr)
    text = render(report)
    print(text, end="")
    if args.out:
        curves = {k for g in report["groups"] for r in g["runs"] for k in (r["curves"] or {})}
        write_outputs(report, Path(args.out), next((m for m in metrics or [] if m in curves), None))
    return text


def entry() -> None:
    """`python -m lct.report` and the console script `lct-report`."""
    run_cli(main)
