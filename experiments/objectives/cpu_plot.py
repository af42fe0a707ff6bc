"""1-NFE Inception FID against training CPU time for the head-to-head's rows (issue 40, item 5's plot): each row's
record groups (three seeds: mean and spread), placed at steps x its kind's seconds per step, measured on one host in
one run (benchmarks/README.md, "Cores"); the vertical line is make run's budget, 1,500 steps of the recipe.

  .venv/bin/python experiments/objectives/cpu_plot.py          # writes experiments/objectives/fid_vs_cpu.png

Reads only committed records (experiments/ablation/records, experiments/objectives/records).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ABL = HERE.parent / "ablation" / "records"
# Seconds per step at one thread, one run per core (the head-to-head's condition), measured one after the other on the
# 2-core AMD EPYC with AVX-512 at commit 94bfc03 (benchmarks/README.md, "The objectives at one thread"). MeanFlow's
# records ran before 94bfc03's cheaper step (the same loss and gradient): its current cost is what is plotted.
S_PER_STEP = {"slct": 0.220, "ilct": 0.226, "meanflow": 0.294, "scm": 0.381}
ROWS = {  # label -> (kind, record folders)
    "make run's recipe (sLCT w/o OT)": (
        "slct",
        [ABL / g for g in ("slct_noot_beta99", "slct_noot_beta99_2k", "slct_noot_beta99_2k5", "slct_noot_beta99_6k")],
    ),
    "iLCT (β2 0.99 at 1,500; 0.999 at 6,000)": ("ilct", [ABL / "ilct_beta99", ABL / "ilct_6k"]),
    "MeanFlow": ("meanflow", [HERE / "records" / g for g in ("meanflow_1k1", "meanflow", "meanflow_6k")]),
    "MeanFlow + parts": (
        "meanflow",
        [HERE / "records" / g for g in ("meanflow_parts_1k1", "meanflow_parts", "meanflow_parts_6k")],
    ),
    "sCM": ("scm", [HERE / "records" / g for g in ("scm_w150", "scm_w150_6k")]),
    "sCM + parts": ("scm", [HERE / "records" / g for g in ("scm_parts", "scm_parts_6k")]),
}


def group_points(folder: Path) -> tuple[int, np.ndarray] | None:
    """(steps, 1-NFE FIDs of its finished, scored seeds) of one record group, None when it has none."""
    fids, steps = [], set()
    for rec in sorted(folder.glob("*/record.json")):
        r = json.loads(rec.read_text())
        fid = r.get("eval", {}).get("inception_1000", {}).get("fid_1nfe")
        if r.get("status") == "finished" and fid is not None:
            fids.append(fid)
            steps.add(int(r["steps"]["done"]))
    if not fids:
        return None
    return max(steps), np.asarray(fids)


def main(argv=None) -> Path:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=HERE / "fid_vs_cpu.png")
    args = p.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for label, (kind, folders) in ROWS.items():
        pts = [(s, f) for s, f in filter(None, map(group_points, folders))]
        if not pts:
            continue
        x = [s * S_PER_STEP[kind] / 60 for s, _ in pts]
        y = [f.mean() for _, f in pts]
        err = [f.std(ddof=1) if len(f) > 1 else 0.0 for _, f in pts]  # as lct.report
        seeds = "/".join(str(len(f)) for _, f in pts)
        ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=f"{label} (n = {seeds})")
    budget = 1500 * S_PER_STEP["slct"] / 60
    ax.axvline(budget, color="grey", ls="--")
    ax.text(
        budget,
        ax.get_ylim()[0],
        " make run's budget\n (1,500 recipe steps;\n 10–14 min on slow hosts)",
        va="bottom",
        fontsize=8,
        color="grey",
    )
    ax.axhline(40, color="red", ls=":", lw=1)
    ax.set_xlabel("training minutes at one thread on the AMD EPYC with AVX-512 (steps x s/step)")
    # The same axis in units of make run's CPU time, which carry over to any host (the ratios hold at 1 and 2 threads).
    top = ax.secondary_xaxis("top", functions=(lambda m: m / budget, lambda r: r * budget))
    top.set_xlabel("x make run's CPU time", fontsize=9)
    ax.set_ylabel("1-NFE Inception FID (1,000 vs 1,000)")
    ax.set_title("1-NFE FID against CPU time, built-in latents (mean ± std over seeds)", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(args.out)
    return args.out


if __name__ == "__main__":
    main()
