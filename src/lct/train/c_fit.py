"""Fit the adaptive c(N) to your latent space (behind `python -m lct.fit_c RUN_DIR [...] --out DIR`).

The paper's c(N) = exp(-1.15 ln(N-1) - 0.85) is a power law fitted to the spread (std) of the TD
residual per curriculum stage on one VAE's latents. This reads that spread from training runs' CSV
logs (`train/N`, `train/td_std`, logged every `log_every` steps), takes one value per stage, fits
ln c = slope ln(N-1) + offset, and writes
  - a c_schedule config with the fitted constants (--config, default OUT/c_schedule.yaml),
  - OUT/fit.json (constants, R^2, per-stage spread, fitted and paper c, their ratios),
  - OUT/fit.png (the per-stage spreads, the fit and the paper's line, log-log).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from lct.core.fit import PAPER_OFFSET, PAPER_SLOPE, fit_power_law, power_law, stage_spread
from lct.errors import LctError

N_KEY, SPREAD_KEY = "train/N", "train/td_std"
MARKER = "# Written by python -m lct.fit_c"  # a config file carrying it is ours to overwrite


def metrics_files(source: str | Path) -> list[Path]:
    """A metrics.csv itself, or every <run>/csv/version_*/metrics.csv of a run directory (resumes add versions)."""
    p = Path(source)
    if p.is_file():
        return [p]
    files = sorted(p.glob("csv/version_*/metrics.csv")) if p.is_dir() else []
    if not files:
        raise LctError(
            f"no metrics.csv for {p}: pass a run directory trained with logger=csv "
            "(it holds csv/version_*/metrics.csv) or the path of a metrics.csv"
        )
    return files


def read_series(files: list[Path]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(step, N, td_std) rows that carry both values, ordered by step; a step logged twice keeps its last row."""
    by_step: dict[int, tuple[float, float]] = {}
    for path in files:
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            if not {N_KEY, SPREAD_KEY} <= set(reader.fieldnames or ()):
                raise LctError(
                    f"{path} has no {N_KEY!r} and {SPREAD_KEY!r} columns: it is not a consistency-"
                    "training log (those are written every log_every steps by lct.train)"
                )
            for row in reader:
                if row[N_KEY] and row[SPREAD_KEY]:
                    by_step[int(row["step"])] = (float(row[N_KEY]), float(row[SPREAD_KEY]))
    if not by_step:
        raise LctError(f"no logged {SPREAD_KEY} values in {', '.join(map(str, files))}: train longer than log_every")
    steps = np.array(sorted(by_step))
    n, s = np.array([by_step[k] for k in steps]).T
    return steps, n, s


def config_text(slope: float, offset: float, r2: float, command: str) -> str:
    """The c_schedule config: AdaptiveC with the fitted constants (iCT's c during the first stage)."""
    return (
        f"# @package method.c\n"
        f"{MARKER}: ln c(N) = slope ln(N-1) + offset fitted to the TD-residual spread per\n"
        f"# curriculum stage (R^2 = {r2:.4f}; the paper's constants are -1.15 / -0.85). Command:\n"
        f"#   {command}\n"
        f"_target_: lct.core.c_schedules.AdaptiveC\n"
        f"s0: ${{method.curriculum.s0}}\n"
        f"slope: {slope:.6g}\n"
        f"offset: {offset:.6g}\n"
    )


def write_config(path: Path, text: str) -> None:
    if path.exists() and MARKER not in path.read_text():
        raise LctError(f"{path} exists and was not written by lct.fit_c; choose another --config path")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def plot_fit(path: Path, n_all, s_all, result: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = np.asarray(result["stages"])
    grid = np.geomspace(stages.min() - 1, stages.max() - 1, 100) + 1
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    ax.scatter(n_all - 1, s_all, s=8, alpha=0.3, color="0.5", label="logged td_std")
    ax.scatter(stages - 1, result["spread"], s=40, color="C0", zorder=3, label=f"stage {result['reduce']}")
    ax.plot(
        grid - 1,
        power_law(grid, result["slope"], result["offset"]),
        color="C0",
        label=f"fit: {result['slope']:.3f} ln(N-1) {result['offset']:+.3f} (R² {result['r2']:.3f})",
    )
    ax.plot(grid - 1, power_law(grid, PAPER_SLOPE, PAPER_OFFSET), "--", color="C3", label="paper: -1.15 ln(N-1) - 0.85")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("N - 1 (curriculum stage)")
    ax.set_ylabel("c  /  TD-residual std")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def fit_c(
    runs: list[str], out: str | Path, config: str | Path | None, reduce: str, skip: float, min_n: int, command: str
) -> dict:
    """Fit ln c = slope ln(N-1) + offset to the runs' per-stage TD-residual spread; write the c_schedule YAML
    (`config`, default OUT/c_schedule.yaml), OUT/fit.json and OUT/fit.png; return fit.json's content."""
    files = [f for run in runs for f in metrics_files(run)]
    _, n_all, s_all = read_series(files)
    stages, spread, counts = stage_spread(n_all, s_all, reduce, skip)
    use = stages >= min_n
    slope, offset, r2 = fit_power_law(stages[use], spread[use])
    fitted, paper = power_law(stages, slope, offset), power_law(stages, PAPER_SLOPE, PAPER_OFFSET)
    result = {
        "slope": slope,
        "offset": offset,
        "r2": r2,
        "reduce": reduce,
        "skip": skip,
        "min_n": min_n,
        "stages": stages.tolist(),
        "spread": spread.tolist(),
        "points": counts.tolist(),
        "fitted_in": use.tolist(),
        "fitted_c": fitted.tolist(),
        "paper_c": paper.tolist(),
        "spread_over_fit": (spread / fitted).tolist(),
        "fit_over_paper": (fitted / paper).tolist(),
        "sources": [str(f) for f in files],
        "command": command,
    }
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config = Path(config) if config else out / "c_schedule.yaml"
    write_config(config, config_text(slope, offset, r2, command))
    (out / "fit.json").write_text(json.dumps(result, indent=2))
    plot_fit(out / "fit.png", n_all, s_all, result)
    return result
