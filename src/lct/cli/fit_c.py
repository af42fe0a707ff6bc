"""`python -m lct.fit_c RUN_DIR [...] --out DIR`: fit the adaptive c(N) to your latent space (lct.train.c_fit says
how and what it writes)."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from lct.cli import at_least, fraction, run_cli
from lct.core.fit import PAPER_OFFSET, PAPER_SLOPE, STAGE_REDUCTIONS
from lct.train.c_fit import fit_c


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m lct.fit_c", description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="run directories (csv/version_*/metrics.csv inside) or metrics.csv files")
    p.add_argument("--out", default="c_fit", help="folder for fit.json and fit.png")
    p.add_argument("--config", default=None, help="c_schedule YAML to write (default OUT/c_schedule.yaml)")
    p.add_argument("--reduce", choices=STAGE_REDUCTIONS, default="median", help="one spread per stage")
    p.add_argument("--skip", type=fraction, default=0.0, help="fraction of each stage's first logs to drop")
    p.add_argument("--min-n", type=at_least(2), default=2, help="fit only stages with N >= this")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    command = "python -m lct.fit_c " + shlex.join(sys.argv[1:] if argv is None else argv)
    result = fit_c(args.runs, args.out, args.config, args.reduce, args.skip, args.min_n, command)
    use = result["fitted_in"]
    print(
        f"ln c(N) = {result['slope']:.4f} ln(N-1) {result['offset']:+.4f}   R^2 = {result['r2']:.4f} over "
        f"{sum(use)} stages (paper: {PAPER_SLOPE} ln(N-1) {PAPER_OFFSET:+})"
    )
    print(f"{'N':>5} {'logs':>5} {'spread':>10} {'fit c':>10} {'spread/fit':>10} {'paper c':>10} {'fit/paper':>10}")
    rows = zip(result["stages"], result["points"], result["spread"], result["fitted_c"], result["paper_c"], use)
    for stage, count, spread, fitted, paper, fitted_in in rows:
        print(
            f"{int(stage):>5} {count:>5} {spread:>10.4g} {fitted:>10.4g} {spread / fitted:>10.3f} "
            f"{paper:>10.4g} {fitted / paper:>10.2f}" + ("" if fitted_in else "   (not fitted)")
        )
    out = Path(args.out)
    print(f"wrote {args.config or out / 'c_schedule.yaml'}, {out / 'fit.json'}, {out / 'fit.png'}")
    return result


def entry() -> None:
    """`python -m lct.fit_c` and the console script `lct-fit-c`."""
    run_cli(main)
