"""The figures and files of `python -m lct.report --out DIR`: tables as md and csv, a metric-vs-step plot
(one mean ± std band per group) and the groups' last sample grids side by side."""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path

from lct.io.report import PLOT_DEFAULTS, label, render


def curve_band(group: dict, metric: str):
    """(steps, mean, std or None) of `metric` over the group's runs, at the steps every run logged."""
    import numpy as np

    curves = [{int(s): float(v) for s, v in (r["curves"] or {}).get(metric) or []} for r in group["runs"]]
    curves = [c for c in curves if c]
    steps = sorted(set.intersection(*(set(c) for c in curves))) if curves else []
    if not steps:
        return None
    y = np.array([[c[s] for s in steps] for c in curves])
    return steps, y.mean(0), y.std(0, ddof=1) if len(curves) > 1 else None


def plot_curves(groups: list[dict], labels: list[str], metric: str, path: Path) -> None:
    """`metric` vs step, one line per group with a mean ± std band over its runs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for group, name in zip(groups, labels, strict=True):
        if band := curve_band(group, metric):
            steps, mean, std = band
            (line,) = ax.plot(steps, mean, marker=".", label=f"{name} (n={len(group['runs'])})")
            if std is not None:
                ax.fill_between(steps, mean - std, mean + std, color=line.get_color(), alpha=0.2)
    ax.set(xlabel="step", ylabel=metric, title=f"{metric}: mean ± std over seeds")
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1))  # long labels: beside the axes
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def grid_file(run: dict) -> Path | None:
    """The run's newest sample grid that exists (a relative path is read from the record's folder)."""
    for p in reversed(run["sample_grids"] or []):
        path = Path(p) if Path(p).is_absolute() else run["_path"].parent / p
        if path.is_file():
            return path
    return None


def plot_grids(groups: list[dict], labels: list[str], path: Path) -> list[str]:
    """Each group's last sample grid (its first run that has one) side by side; a note per group without.

    Records travel (git) while sample grids stay with their runs: an existing `path` is kept as it is when some
    group's grid is missing here, so regenerating a committed report elsewhere never drops groups from its figure.
    """
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    found, notes = [], []
    for group, name in zip(groups, labels, strict=True):
        grid = next((f for r in group["runs"] if (f := grid_file(r))), None)
        if grid:
            found.append((name, grid))
        else:
            notes.append(f"note: no sample grid file for {name}: left out of {path.name}")
    if notes and path.is_file():
        return [*notes, f"note: {path} kept as it was: drawn here it would lack {len(notes)} group(s)"]
    if found:
        cols = min(len(found), 4)
        fig, axes = plt.subplots(
            math.ceil(len(found) / cols), cols, figsize=(5 * cols, 3.4 * math.ceil(len(found) / cols)), squeeze=False
        )
        for ax in axes.flat:
            ax.axis("off")
        for ax, (name, grid) in zip(axes.flat, found):
            ax.imshow(plt.imread(grid))
            ax.set_title(textwrap.fill(name, 32), fontsize=7)
        fig.tight_layout()
        save_png(fig, path, dpi=100)
        plt.close(fig)
    return notes


def save_png(fig, path: Path, dpi: int) -> None:
    """The figure as a PNG, in one grey channel when every pixel is grey and opaque (digit grids: a third the bytes)."""
    import io

    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    image = Image.open(buf)
    pixels = np.asarray(image.convert("RGBA"))
    grey = (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 1] == pixels[..., 2]).all()
    (image.convert("L") if grey and (pixels[..., 3] == 255).all() else image).save(path, optimize=True)


def write_outputs(report: dict, out: Path, plot_metric: str | None) -> None:
    """report.md, report.csv, <metric>_vs_step.png and grids.png under `out`."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text(render(report))
    with open(out / "report.csv", "w", newline="") as f:
        csv.writer(f).writerows([report["header"], *report["rows"]])
    labels = [label(g, report["columns"]) for g in report["groups"]]
    runs = [r for g in report["groups"] for r in g["runs"]]
    metric = plot_metric or next((m for m in PLOT_DEFAULTS if any(m in (r["curves"] or {}) for r in runs)), None)
    if metric:
        plot_curves(report["groups"], labels, metric, out / f"{metric.replace('/', '_')}_vs_step.png")
    for line in plot_grids(report["groups"], labels, out / "grids.png"):
        print(line, file=sys.stderr)
