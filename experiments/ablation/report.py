"""Tables (tables.md) and plots of the ablation study, from results.json alone (study.py report)."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
from study import (
    EDM_CURVE_NFE,
    EDM_NFE,
    LENGTH_VARIANTS,
    LONG_SUFFIXES,
    PAPER,
    ROWS,
    base_ema_row,
    base_row,
    headline_nfe,
    is_edm,
    long_suffix,
    study_order,
    variant_base,
)

from lct.core.ema import ema_decay, warmup_width

CURVE_YLABEL = f"digit FID, 1 NFE (EDM: {EDM_CURVE_NFE}; 256 samples)"  # the in-loop curves' axis

TD_KEYS = ["train/td_std", "train/td_kurtosis", "train/td_outer_fence"]


def by_row(runs: list[dict]) -> dict[str, list[dict]]:
    rows = defaultdict(list)
    for r in runs:
        rows[r["row"]].append(r)
    return {row: rows[row] for row in [*ROWS, *sorted(set(rows) - set(ROWS))] if row in rows}


def stat(values: list[float], digits: int = 1) -> str:
    """mean ± sample std over seeds (the mean alone for one seed; the tables' seeds column marks n < 3).
    None marks a seed without the score: the cell then says from how many seeds it comes."""
    v = np.asarray([x for x in values if x is not None], dtype=float)
    if len(v) == 0:
        return "—"
    text = f"{v.mean():.{digits}f}" + (f" ± {v.std(ddof=1):.{digits}f}" if len(v) > 1 else "")
    return text + (f" ({len(v)} of {len(values)} seeds)" if len(v) < len(values) else "")


def seeds(runs: list[dict]) -> str:
    return str(len(runs)) + ("" if len(runs) >= 3 else " (< 3)")


def metric(run: dict, nfe: int, key: str, table: str = "results") -> float | None:
    return run["metrics"].get(table, {}).get(f"{nfe}nfe", {}).get(key)


def pr(runs: list[dict], nfe: int) -> str:
    """precision / recall at `nfe`."""
    p, r = ([metric(run, nfe, key) for run in runs] for key in ("precision", "recall"))
    return f"{stat(p, 3)} / {stat(r, 3)}"


def paper_cell(paper) -> str:
    if paper is None:
        return "—"
    fid1, recall, fid2 = paper
    return f"{fid1}, R {recall}" + (f"; {fid2}" if fid2 is not None else "")


def wall(runs: list[dict]) -> str:
    return f"{np.mean([r['train_wall_s'] for r in runs]) / 60:.0f}"


def main_table(rows: dict[str, list[dict]]) -> list[str]:
    lines = [
        "| row | seeds | steps × batch | train min/run | FID 1 NFE | FID 2 NFE | P / R 1 NFE | digit FID 1 NFE "
        "| legible 1 NFE | coverage 1 NFE | digit FID 2 NFE | digit FID 1 NFE, online weights "
        "| paper: FID 1 NFE, recall; FID 2 NFE |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row, runs in rows.items():
        second = 3 if is_edm(row) else 2  # EDM's cheapest multi-step point is Heun NFE 3
        edm_steps = runs[0].get("init_edm_steps", 0)
        steps_text = f"{edm_steps} EDM + {runs[0]['steps']}" if edm_steps else str(runs[0]["steps"])
        batch = runs[0].get("config", {}).get("data", {}).get("batch_size")
        steps_text += f" × {batch}" if batch else ""
        paper = PAPER.get(row)
        lines.append(
            f"| `{row}` | {seeds(runs)} | {steps_text} | {wall(runs)} "
            f"| {stat([metric(r, 1, 'fid') for r in runs])} "
            f"| {stat([metric(r, second, 'fid') for r in runs])}{' (3 NFE)' if second == 3 else ''} "
            f"| {pr(runs, 1)} "
            f"| {stat([metric(r, 1, 'fid', 'digits') for r in runs], 2)} "
            f"| {stat([metric(r, 1, 'legible', 'digits') for r in runs], 3)} "
            f"| {stat([metric(r, 1, 'coverage', 'digits') for r in runs], 3)} "
            f"| {stat([metric(r, second, 'fid', 'digits') for r in runs], 2)} "
            f"| {stat([metric(r, 1, 'fid', 'digits_online') for r in runs], 2)} "
            f"| {paper_cell(paper)} |"
        )
    return lines


def edm_table(runs: list[dict]) -> list[str]:
    lines = ["| NFE (Heun) | FID | P / R | digit FID | legible |", "|---|---|---|---|---|"]
    for n in EDM_NFE:
        lines.append(
            f"| {n} | {stat([metric(r, n, 'fid') for r in runs])} "
            f"| {pr(runs, n)} "
            f"| {stat([metric(r, n, 'fid', 'digits') for r in runs], 2)} "
            f"| {stat([metric(r, n, 'legible', 'digits') for r in runs], 3)} |"
        )
    return lines


def stages(run: dict) -> dict[float, dict[str, float]]:
    """Per curriculum stage (N): the mean of each logged TD statistic and c over the stage's log rows."""
    c = run["curves"]
    if "train/N" not in c:
        return {}
    n_at = dict((s, v) for s, v in c["train/N"])
    out: dict[float, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for key in [*TD_KEYS, "train/c"]:
        for s, v in c.get(key, []):
            if s in n_at:
                out[n_at[s]][key].append(v)
    return {n: {k: float(np.mean(v)) for k, v in d.items()} for n, d in sorted(out.items())}


def td_table(rows: dict[str, list[dict]]) -> list[str]:
    lines = ["| row | N | c | TD std | TD excess kurtosis | beyond outer fence |", "|---|---|---|---|---|---|"]
    for row, runs in rows.items():
        per = [stages(r) for r in runs]
        if not per[0]:
            continue
        for n in per[0]:
            mean = {k: np.mean([p[n][k] for p in per if n in p and k in p[n]]) for k in per[0][n]}
            lines.append(
                f"| `{row}` | {n:.0f} | {mean['train/c']:.4g} | {mean['train/td_std']:.4f} "
                f"| {mean['train/td_kurtosis']:.2f} | {mean['train/td_outer_fence']:.4f} |"
            )
    return lines


def diagnosis_table(diagnosis: list[dict]) -> list[str]:
    """diagnose.py's output: per row and stage, where pseudo-Huber's and Cauchy's gradients go."""
    lines = [
        "| run | N | c | c² / median m | outliers (share of samples) | σ_i > 1 (share of samples) "
        "| pseudo-Huber: gradient share on outliers / σ_i > 1 | Cauchy: gradient share on outliers / σ_i > 1 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for d in diagnosis:
        name = "/".join(Path(d["checkpoint"]).parts[-4:-2])
        for s in d["stages"]:
            ph, ca = s["pseudo_huber"], s["cauchy"]
            lines.append(
                f"| `{name}` | {s['N']} | {s['c']:.4f} | {s['c2_over_median_m']:.3f} | {s['outlier_frac']:.3f} "
                f"| {s['high_noise_frac']:.2f} | {ph['outliers']:.3f} / {ph['high_noise']:.3f} "
                f"| {ca['outliers']:.3f} / {ca['high_noise']:.3f} |"
            )
    return lines


def versus_table(rows: dict[str, list[dict]], base: str = "ilct") -> list[str]:
    """Question 4's test: a row beats `base` when its mean 1-NFE FID is lower by more than the larger of the
    two seed spreads (sample std); rows with fewer than 2 seeds of FID are left out (no spread)."""
    fid = {row: [v for v in (metric(r, 1, "fid") for r in runs) if v is not None] for row, runs in rows.items()}
    if len(fid.get(base, [])) < 2:
        return []
    b = np.asarray(fid[base])
    lines = [
        f"| row | seeds | FID 1 NFE − `{base}` | larger seed std | beyond the spread | seeds vs `{base}`'s seeds |",
        "|---|---|---|---|---|---|",
    ]
    for row, v in fid.items():
        if row == base or len(v) < 2:
            continue
        v = np.asarray(v)
        delta, spread = v.mean() - b.mean(), max(v.std(ddof=1), b.std(ddof=1))
        verdict = "better" if delta < -spread else "worse" if delta > spread else "no"
        order = "every seed better" if v.max() < b.min() else "every seed worse" if v.min() > b.max() else "overlap"
        lines.append(f"| `{row}` | {len(v)} | {delta:+.1f} | {spread:.1f} | {verdict} | {order} |")
    return lines


def variant_table(rows: dict[str, list[dict]]) -> list[str]:
    """Each question-4 variant against its own row on the seeds both have (same seed: same initial weights,
    data order and noise draws until the changed setting makes them part): per-seed differences of 1-NFE FID."""
    lines = []
    for row, runs in rows.items():
        base = variant_base(row)
        if base not in rows:
            continue
        ours = {r["seed"]: metric(r, 1, "fid") for r in runs}
        theirs = {r["seed"]: metric(r, 1, "fid") for r in rows[base]}
        paired = sorted(k for k in ours if ours[k] is not None and theirs.get(k) is not None)
        if not paired:
            continue
        deltas = np.asarray([ours[k] - theirs[k] for k in paired])
        per_seed = ", ".join(f"{k}: {ours[k]:.1f} vs {theirs[k]:.1f} ({d:+.1f})" for k, d in zip(paired, deltas))
        base_fids = [v for v in theirs.values() if v is not None]
        base_std = f"{np.std(base_fids, ddof=1):.1f}" if len(base_fids) > 1 else "—"
        lines.append(f"| `{row}` | `{base}` | {per_seed} | {deltas.mean():+.1f} | {base_std} |")
    if not lines:
        return []
    return [
        "| row | changes one setting of | per seed: FID 1 NFE, row vs base (difference) | mean difference | "
        "base's seed std (all its seeds) |",
        "|---|---|---|---|---|",
        *lines,
    ]


def ema_horizon(run: dict, decay: float) -> int:
    """About how many final steps an EMA averages: 1 / (1 − its decay at the run's last step)."""
    return round(1 / (1 - ema_decay(run["steps"] - 1, decay, run["config"]["ema"].get("warmup", False))))


def ema_points(runs: list[dict], base: list[dict]) -> list[tuple[str, int, list, list]]:
    """Question 4's EMA length: (EMA, steps it averages at the end, 1-NFE Inception FIDs, digit FIDs) for the EMA
    of the row the runs vary (`base`, scale=cpu's) on the same seeds, then each EMA the runs carry (the first is
    the row's own score, the others metrics["emas"])."""
    points = []
    same = [r for r in base if r["seed"] in {x["seed"] for x in runs}]
    if same:
        ema = same[0]["config"]["ema"]
        w = warmup_width(ema.get("warmup", False))
        name = f"`{same[0]['row']}`'s, {ema['decays'][0]}, warm-up w = {w:g} (seeds as here)"
        scores = [r["metrics"] for r in same]
        points.append((name, ema_horizon(same[0], ema["decays"][0]), scores))
    for k, decay in enumerate(runs[0]["config"]["ema"]["decays"]):
        scores = [r["metrics"] if k == 0 else r["metrics"]["emas"].get(str(decay), {}) for r in runs]
        points.append((str(decay), ema_horizon(runs[0], decay), scores))
    return [
        (name, h, *([metric({"metrics": m}, 1, "fid", t) for m in scores] for t in ("results", "digits")))
        for name, h, scores in points
    ]


def ema_table(points: list[tuple[str, int, list, list]]) -> list[str]:
    lines = ["| EMA | averages about (steps) | Inception FID 1 NFE | digit FID 1 NFE |", "|---|---|---|---|"]
    return lines + [f"| {name} | {h} | {stat(fid)} | {stat(digit)} |" for name, h, fid, digit in points]


def ema_plot(emas: dict[str, list[tuple[str, int, list, list]]], out: Path) -> str:
    """Inception FID vs the steps each EMA averages, one line per EMA-length row; a star: its base row's EMA."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for k, (row, points) in enumerate(emas.items()):
        own = [p for p in points if not p[0].startswith("`")]
        h = [p[1] for p in own]
        y = [np.mean([v for v in p[2] if v is not None]) for p in own]
        ax.plot(h, y, "o-", color=f"C{k}", label=row)
        for name, hb, fid, _ in points:
            if name.startswith("`") and any(v is not None for v in fid):
                ax.plot([hb], [np.mean([v for v in fid if v is not None])], "*", ms=12, color=f"C{k}")
    ax.set(
        xscale="log",
        xlabel="steps the EMA averages at the end (star: scale=cpu's EMA)",
        ylabel="Inception FID, 1 NFE (1,000 samples)",
    )
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "ema_length.png", dpi=120)
    plt.close(fig)
    return "ema_length.png"


def curve_key(row: str) -> str:
    """The row's in-loop digit-FID curve (at its headline_nfe)."""
    return f"digits/fid_{headline_nfe(row)}nfe"


def curve_label(row: str, code: bool = False) -> str:
    """The row's name (in backticks for a table) and, for an EDM row, the NFE its curve is at."""
    name = f"`{row}`" if code else row
    return f"{name}, {EDM_CURVE_NFE} NFE" if is_edm(row) else name


def curve_table(rows: dict[str, list[dict]]) -> list[str]:
    steps = sorted({s for row, runs in rows.items() for r in runs for s, _ in r["curves"].get(curve_key(row), [])})
    lines = ["| row | " + " | ".join(f"step {s}" for s in steps) + " |", "|---" * (len(steps) + 1) + "|"]
    for row, runs in rows.items():
        cells = []
        for s in steps:
            vals = [v for r in runs for t, v in r["curves"].get(curve_key(row), []) if t == s]
            cells.append(stat(vals, 2))
        lines.append(f"| {curve_label(row, code=True)} ({seeds(runs)}) | " + " | ".join(cells) + " |")
    return lines


def fid_curve(row: str, runs: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """The row's in-loop digit FID (curve_key) at the steps every seed logged: (steps, (seeds, steps) values)."""
    curves = [dict((s, v) for s, v in r["curves"].get(curve_key(row), [])) for r in runs]
    steps = sorted(set.intersection(*[set(c) for c in curves])) if curves and all(curves) else []
    return np.array(steps, dtype=int), np.array([[c[s] for s in steps] for c in curves])


def long_pairs(rows: dict[str, list[dict]], suffix: str = "_6k") -> list[tuple[str, str]]:
    """Question 3's (long row, its 1,500-step row) pairs among the rows run with `suffix`, e.g. (ilct_6k, ilct).
    The 20,000-step rows have their own table and plot (twenty_k_section)."""
    return [(row, base_row(row)) for row in rows if long_suffix(row) == suffix]


def length_table(rows: dict[str, list[dict]]) -> list[str]:
    """Question 3: each 6,000-step row's curve beside its 1,500-step row's, one line per logged step."""
    pairs = long_pairs(rows)
    if not pairs:
        return []
    curves = {}
    for long, base in pairs:
        for row in (long, base):
            if row in rows and row not in curves:
                steps, values = fid_curve(row, rows[row])
                curves[row] = {int(s): list(values[:, k]) for k, s in enumerate(steps)}
    cols = list(curves)
    lines = [
        "| step | " + " | ".join(f"{curve_label(c, code=True)} ({seeds(rows[c])})" for c in cols) + " |",
        "|---" * (len(cols) + 1) + "|",
    ]
    for s in sorted({s for c in curves.values() for s in c}):
        lines.append(f"| {s} | " + " | ".join(stat(curves[c][s], 1) if s in curves[c] else "" for c in cols) + " |")
    final = [stat([v for r in rows[c] if (v := metric(r, headline_nfe(c), "fid")) is not None], 1) for c in cols]
    lines.append("| **Inception FID, end** | " + " | ".join(final) + " |")
    return lines


def plots(rows: dict[str, list[dict]], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    written = []
    # FID (digit metric, in-loop, 256 samples) vs step, 1 NFE.
    fig, ax = plt.subplots(figsize=(6, 4))
    for k, (row, runs) in enumerate((r, v) for r, v in rows.items() if not base_row(r)):  # long rows: own plot
        steps, m = fid_curve(row, runs)
        if not len(steps):
            continue
        offset = runs[0].get("init_edm_steps", 0)
        yerr = m.std(0) if len(m) > 1 else None
        style = dict(color=f"C{k % 10}", ls="-" if k < 10 else "--", marker="o" if k < 10 else "s")  # 10 colours
        ax.errorbar(steps + offset, m.mean(0), yerr=yerr, label=curve_label(row), **style)
    ax.set(xlabel="training step (EDM steps included for *_init)", ylabel=CURVE_YLABEL)
    ax.set_yscale("log")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(out / "fid_vs_step.png", dpi=120)
    plt.close(fig)
    written.append("fid_vs_step.png")

    # Question 3: the long rows (solid) and their 1,500-step rows (dashed, mean ± std over seeds).
    pairs = long_pairs(rows)
    if pairs:
        fig, ax = plt.subplots(figsize=(6.5, 4))
        for k, (long, base) in enumerate(pairs):
            for row, style in ((long, "-"), (base, "--")):
                if row not in rows:
                    continue
                steps, m = fid_curve(row, rows[row])
                if len(steps):
                    yerr = m.std(0) if len(m) > 1 else None
                    kw = dict(ls=style, marker="o", ms=3, color=f"C{k}", label=curve_label(row))
                    ax.errorbar(steps, m.mean(0), yerr=yerr, **kw)
        ax.set(xlabel="training step", ylabel=CURVE_YLABEL, yscale="log")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "fid_vs_step_long.png", dpi=120)
        plt.close(fig)
        written.append("fid_vs_step_long.png")

    # TD-residual statistics vs step along the chain.
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.4))
    for row, runs in rows.items():
        if is_edm(row) or "train/td_std" not in runs[0]["curves"]:
            continue
        for ax, key in zip(axes, ["train/td_std", "train/td_kurtosis", "train/td_outer_fence", "train/c"], strict=True):
            s, v = np.array(runs[0]["curves"][key]).T
            ax.plot(s, v, label=row, lw=1)
            ax.set(title=key.split("/")[1] + " (seed " + str(runs[0]["seed"]) + ")", xlabel="step")
            ax.set_yscale("log")
    axes[0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out / "td_stats.png", dpi=110)
    plt.close(fig)
    written.append("td_stats.png")

    # Inception FID per row, 1 and 2 NFE, seeds as points.
    fig, ax = plt.subplots(figsize=(8, 3.6))
    names = list(rows)
    for j, (nfe, color) in enumerate([(1, "C0"), (2, "C1")]):
        for i, row in enumerate(names):
            n = 3 if (is_edm(row) and nfe == 2) else nfe
            vals = [metric(r, n, "fid") for r in rows[row]]
            vals = [v for v in vals if v is not None]
            if vals:
                ax.bar(i + 0.4 * j - 0.2, np.mean(vals), 0.4, color=color, label=f"{nfe} NFE" if i == 0 else None)
                ax.plot([i + 0.4 * j - 0.2] * len(vals), vals, "k.", ms=3)
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("Inception FID (1,000 vs 1,000)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "fid_rows.png", dpi=120)
    plt.close(fig)
    written.append("fid_rows.png")

    # One grid per row (seed 0 where it exists), same evaluation noise.
    tiles = [(row, out / "grids" / f"{row}_seed{min(r['seed'] for r in runs)}.png") for row, runs in rows.items()]
    tiles = [(row, p) for row, p in tiles if p.exists()]
    if tiles:
        cols = min(4, len(tiles))
        fig, axes = plt.subplots(-(-len(tiles) // cols), cols, figsize=(3 * cols, 3.2 * -(-len(tiles) // cols)))
        for ax in np.atleast_1d(axes).ravel():
            ax.axis("off")
        for ax, (row, p) in zip(np.atleast_1d(axes).ravel(), tiles, strict=False):
            ax.imshow(Image.open(p), cmap="gray")
            ax.set_title(row, fontsize=9)
        fig.tight_layout()
        fig.savefig(out / "grids.png", dpi=100)
        plt.close(fig)
        written.append("grids.png")
    return written


def sigma_mid_table(sweep: dict) -> list[str]:
    """Mean digit FID over seeds at 1 NFE and at each swept 2-NFE sigma_mid index (development noise)."""
    rows = by_row(sweep["runs"])
    points = [(c["index"], c["sigma_mid"]) for c in next(iter(rows.values()))[0]["curve"]]
    head = " | ".join(f"{i} (σ {s:.3g})" for i, s in points)
    lines = [f"| row | seeds | 1 NFE | {head} | best index |", "|---" * (len(points) + 4) + "|"]
    for row, entries in rows.items():
        means = [np.mean([e["curve"][k]["fid"] for e in entries]) for k in range(len(points))]
        best = points[int(np.argmin(means))][0]
        cells = " | ".join(f"{m:.1f}" for m in means)
        one = stat([e["1nfe"]["fid"] for e in entries])
        lines.append(f"| `{row}` | {seeds(entries)} | {one} | {cells} | {best} |")
    return lines


def sigma_mid_scored_table(sweep: dict, rows: dict[str, list[dict]]) -> list[str]:
    """The runs scored at a chosen index on the evaluation noise, beside their 1-NFE and default 2-NFE scores."""
    lines = []
    for row, entries in by_row(sweep["runs"]).items():
        scored = [e for e in entries if "scored" in e]
        if not scored:
            continue
        runs = [r for r in rows.get(row, []) if r["seed"] in {e["seed"] for e in scored}]
        first = scored[0]["scored"]
        lines.append(
            f"| `{row}` | {seeds(scored)} | {first['index']} (σ {first['sigma_mid']:.3g}) "
            f"| {stat([e['scored']['fid'] for e in scored])} | {stat([metric(r, 2, 'fid') for r in runs])} "
            f"| {stat([metric(r, 1, 'fid') for r in runs])} | {stat([e['scored']['digit_fid'] for e in scored])} "
            f"| {stat([metric(r, 1, 'fid', 'digits') for r in runs])} "
            f"| {stat([e['scored']['digit_legible'] for e in scored], 3)} |"
        )
    head = [
        "| row | seeds | index | Inception FID 2 NFE there | FID 2 NFE at the default (430) | FID 1 NFE "
        "| digit FID 2 NFE there | digit FID 1 NFE | legible 2 NFE there |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    return head + lines if lines else []


def sigma_mid_plot(sweep: dict, out: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for k, (row, entries) in enumerate(by_row(sweep["runs"]).items()):
        x = [c["sigma_mid"] for c in entries[0]["curve"]]
        y = np.mean([[c["fid"] for c in e["curve"]] for e in entries], axis=0)
        line = ax.plot(x, y, "o-", color=f"C{k}", label=f"{row} ({len(entries)}), 2 NFE")[0]
        ax.axhline(np.mean([e["1nfe"]["fid"] for e in entries]), color=line.get_color(), ls="--", lw=1)
    ax.set(xscale="log", xlabel="σ_mid (2 NFE); dashed: 1 NFE", ylabel="digit FID (1,000 samples, dev noise)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "sigma_mid.png", dpi=120)
    plt.close(fig)
    return "sigma_mid.png"


def stop_score(r: dict) -> str:
    """A stopped run's Inception FID where it stopped (`study.py score`): 1 / 2 NFE (EDM: 1 / 35 NFE)."""
    if "score" not in r:
        return "—"
    res = r["score"]["metrics"]["results"]
    nfe = [1, EDM_CURVE_NFE] if is_edm(r["row"]) else [1, 2]
    return " / ".join(f"{res[f'{n}nfe']['fid']:.1f}" if f"{n}nfe" in res else "—" for n in nfe)


def furthest(stopped: list[dict]) -> list[dict]:
    """Of the stopped runs (`study.py collect` files), the one that got furthest per row and device."""
    best: dict[tuple, dict] = {}
    for r in stopped:
        key = (r["row"], r["device"])
        if key not in best or r["steps"] > best[key]["steps"]:
            best[key] = r
    return sorted(best.values(), key=lambda r: (*study_order(r["row"], r["seed"]), r["device"]))


def twenty_k_section(rows: dict[str, list[dict]], stopped: list[dict], out: Path) -> tuple[list[str], list[str]]:
    """Question 3 at 20,000 steps across machines: every `*_20k` run, finished (results.json) or stopped early
    (`stopped`: the collect files; per row and device the one that got furthest, unless that run, same seed and
    device, finished later), as one column of in-loop
    digit FID (1 NFE; EDM: its Heun NFE) every 1,000 steps, and its Inception FID at the end or where it stopped;
    the plot fid_vs_step_20k.png (finished: solid, stopped: dotted; CPU: circles, GPU: squares) adds each row's
    6,000-step schedule (dashed).
    Returns (table lines, plots written); nothing unless a run finished or the stopped runs span machines."""
    finished = [r for row, runs in rows.items() if long_suffix(row) == "_20k" for r in runs]
    done = {(r["row"], r["seed"], r["device"]) for r in finished}  # a run finished later supersedes its stop
    stopped = [r for r in furthest(stopped) if (r["row"], r["seed"], r["device"]) not in done]
    if not finished and len({r["device"] for r in stopped}) < 2:
        return [], []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    entries = sorted(
        [(r, True) for r in finished] + [(r, False) for r in stopped],
        key=lambda e: (*study_order(e[0]["row"], e[0]["seed"]), not e[1], e[0]["device"]),
    )
    colours = {row: f"C{k}" for k, row in enumerate(dict.fromkeys(r["row"] for r, _ in entries))}
    cols: list[tuple[str, dict[int, float], str]] = []  # (header, {step: digit FID}, Inception FID cell)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for r, done in entries:
        row, nfe = r["row"], headline_nfe(r["row"])
        pts = r["curves"].get(curve_key(row), [])
        if done:
            fid, where = metric(r, nfe, "fid"), ""
        else:
            fid = r.get("score", {}).get("metrics", {}).get("results", {}).get(f"{nfe}nfe", {}).get("fid")
            where = f" at step {r['score']['step']:,}" if fid is not None else ""
        state = f"{r['steps']:,} steps" if done else f"stopped at {r['steps']:,}"
        cols.append(
            (
                f"{curve_label(row, code=True)} seed {r['seed']}, {r['device'].split(',')[0]}, {state}",
                {int(s): v for s, v in pts},
                f"{fid:.1f}{where}" if fid is not None else "—",
            )
        )
        machine = r["device"].split(",")[0]
        label = f"{curve_label(row)} seed {r['seed']}, {machine}" + ("" if done else f" (stopped at {r['steps']:,})")
        # finished: solid, stopped: dotted; CPU: circles, GPU: squares
        marker = "o" if machine.startswith("cpu") else "s"
        style = dict(ls="-" if done else ":", marker=marker, ms=2.5, color=colours[row])
        ax.plot([p[0] for p in pts], [p[1] for p in pts], label=label, **style)
    for row, colour in colours.items():
        short = base_row(row) + "_6k"
        if short in rows:
            s6, m6 = fid_curve(short, rows[short])
            label = f"{curve_label(short)} (6,000-step schedule, {seeds(rows[short])} seeds)"
            ax.plot(s6, m6.mean(0), "--", color=colour, lw=1, label=label)
    ax.set(xlabel="training step", ylabel=CURVE_YLABEL, yscale="log")
    ax.legend(fontsize=5.5)
    fig.tight_layout()
    fig.savefig(out / "fid_vs_step_20k.png", dpi=120)
    plt.close(fig)
    grid = sorted({s for _, c, _ in cols for s in c if s % 1000 == 0})
    lines = ["| step | " + " | ".join(h for h, _, _ in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    lines += [f"| {s:,} | " + " | ".join(f"{c[s]:.0f}" if s in c else "" for _, c, _ in cols) + " |" for s in grid]
    lines.append("| **Inception FID** | " + " | ".join(f for _, _, f in cols) + " |")
    return lines, ["fid_vs_step_20k.png"]


def stopped_plot(path: Path) -> str:
    """The plot of a collect file's section: gpu_20k.json -> fid_vs_step_gpu.png, gpu_20k_call2.json ->
    fid_vs_step_gpu_call2.png (their names since the first calls), cpu_20k.json -> fid_vs_step_cpu_20k.png."""
    if path.stem == "gpu_20k":
        return "fid_vs_step_gpu.png"
    return f"fid_vs_step_{path.stem.replace('gpu_20k_', 'gpu_')}.png"


def partial_section(partial: list[dict], out: Path, plot: str = "fid_vs_step_gpu.png") -> tuple[list[str], str]:
    """Runs `study.py train` stopped before their steps (gpu_20k*.json, `study.py collect`): how far each got,
    its Inception FID there if `study.py score` scored it, the in-loop digit FID per row at every step all its
    runs logged (mean ± std over its runs, compiled and eager alike; every 1,000 steps when there are more than
    12 columns), and the plot `plot` (one line per run)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows: dict[str, list[dict]] = {}
    for r in partial:
        rows.setdefault(r["row"], []).append(r)
    lines = [
        "| run | variant | steps reached (of) | wall s | steps/s | device "
        "| Inception FID there: 1 / 2 NFE (EDM 1 / 35) |",
        "|---|---|---|---|---|---|---|",
        *(
            f"| `{r['row']}` seed {r['seed']} | {r['variant']} | {r['steps']:,} ({r['row_steps']:,}) | "
            f"{r['train_wall_s']:.0f} | {r['steps'] / r['train_wall_s']:.1f} | {r['device']} | {stop_score(r)} |"
            for r in partial
        ),
        "",
    ]
    curves = {row: fid_curve(row, runs) for row, runs in rows.items()}
    steps = sorted({int(s) for st, _ in curves.values() for s in st})
    if len(steps) > 12:
        steps = [s for s in steps if s % 1000 == 0]
    lines += ["| row (runs) | " + " | ".join(f"step {s}" for s in steps) + " |", "|---" * (len(steps) + 1) + "|"]
    for row, (st, m) in curves.items():
        cells = [stat(list(m[:, list(st).index(s)]), 0) if s in st else "" for s in steps]
        lines.append(f"| {curve_label(row, code=True)} ({len(rows[row])}) | " + " | ".join(cells) + " |")
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for k, (row, runs) in enumerate(rows.items()):
        for r in runs:
            pts = r["curves"].get(curve_key(row), [])
            ls = "-" if r["variant"] == "compiled" else ":"
            label = f"{curve_label(row)} seed {r['seed']} ({r['variant']})"
            ax.plot([p[0] for p in pts], [p[1] for p in pts], ls=ls, marker="o", ms=3, color=f"C{k}", label=label)
    ax.set(xlabel="training step (of a 20,000-step schedule)", ylabel=CURVE_YLABEL, yscale="log")
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(out / plot, dpi=120)
    plt.close(fig)
    return lines, plot


def machines(runs: list[dict]) -> str:
    """The devices that produced the runs; with more than one, which runs each produced (row seedK, ...)."""
    devices = sorted({r["device"] for r in runs})
    if len(devices) == 1:
        return devices[0]
    named = {d: ", ".join(f"{r['row']} seed{r['seed']}" for r in runs if r["device"] == d) for d in devices}
    return "; ".join(f"{d} ({names})" for d, names in named.items())


def rerun_table(reruns: list[dict]) -> list[str]:
    """`study.py rerun`'s comparisons: each retrained run beside its published record and its row's spread."""
    verdict = {True: "within", False: "outside", None: "—"}
    lines = [
        "| run | here | published | difference | row: mean ± std (seeds) | 2 std | pooled std | 2 pooled std | "
        "trained here | machines (here / published) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in reruns:
        std = f" ± {r['row_std']:.1f}" if r["row_std"] is not None else ""
        pooled = f"{r['pooled_std']:.1f}" if r["pooled_std"] is not None else "—"
        lines.append(
            f"| `{r['row']}` seed {r['seed']} | {r['rerun_fid']:.1f} | {r['published_fid']:.1f} | "
            f"{r['rerun_fid'] - r['published_fid']:+.1f} | {r['row_mean']:.1f}{std} ({r['row_seeds']}) | "
            f"{verdict[r['within_row']]} | {pooled} | {verdict[r['within_pooled']]} | "
            f"{r['rerun_train_wall_s'] / 60:.0f} min, {r['rerun_threads']} thread(s) | "
            f"{r['rerun_device']} / {r['published_device']} |"
        )
    return lines


def report(runs: list[dict], out: Path) -> None:
    rows = by_row(runs)
    lines = [
        "<!-- written by `python experiments/ablation/study.py report` from results.json; do not edit -->",
        f"Machines: {machines(runs)}. Threads per run: {sorted({r['threads'] for r in runs})}. "
        "FID: Inception, 1,000 samples (seeds 10,000 + i) vs the fixed 1,000-digit reference; digit metrics "
        "from the same 1,000 samples; mean ± sample std over seeds; rows with fewer than 3 seeds say (< 3).",
        "",
        "## All rows",
        "",
        *main_table(rows),
        "",
    ]
    # Each row against iLCT at its own length: the 1,500-step rows against `ilct`, the long rows against `ilct_6k`
    # or `ilct_20k`, a variant of another step count (`_2k5`) against `ilct_2k5` where there is one.
    short = {row: runs for row, runs in rows.items() if not base_row(row)}
    same_length = {row: runs for row, runs in short.items() if not row.endswith(LENGTH_VARIANTS)}
    others = [({r: v for r, v in rows.items() if long_suffix(r) == sfx}, f"ilct{sfx}") for sfx in LONG_SUFFIXES]
    others += [({r: v for r, v in short.items() if r.endswith(sfx)}, f"ilct{sfx}") for sfx in LENGTH_VARIANTS]
    versus = [t for t in (versus_table(same_length), *(versus_table(g, base=b) for g, b in others)) if t]
    if versus:
        lines += ["## Against iLCT of the same length (1-NFE Inception FID, rows with ≥ 2 seeds)", ""]
        lines += [line for t in versus for line in (*t, "")]
    variants = variant_table(rows)
    if variants:
        lines += ["## Question 4's variants against their own row, seed by seed (1-NFE Inception FID)", ""]
        lines += [*variants, ""]
    if "edm" in rows:
        lines += ["## EDM by NFE (Heun)", "", *edm_table(rows["edm"]), ""]
    lines += [
        f"## In-loop digit FID (1 NFE; EDM rows: Heun {EDM_CURVE_NFE} NFE; 256 samples, seed 0 noise) vs step",
        "",
        *curve_table(short),
        "",
    ]
    length = length_table(rows)
    if length:
        lines += [
            f"## Training length (question 3): in-loop digit FID (1 NFE; EDM: {EDM_CURVE_NFE}) of the long rows "
            "beside their 1,500-step rows",
            "",
            "A long row's curriculum stretches with its steps, so its step-1,500 point is not the short row's.",
            "",
            *length,
            "",
        ]
    emas = {
        row: ema_points(runs, rows.get(base_ema_row(row), []))
        for row, runs in rows.items()
        if all("emas" in r["metrics"] for r in runs)
    }
    for row, points in emas.items():
        w = rows[row][0]["config"]["ema"].get("warmup")
        lines += [
            f"## EMA length (question 4): the EMAs of `{row}` (seeds: {seeds(rows[row])}; warm-up w = {w}: the "
            f"decay is min(decay, (1 + k)/({w} + k)))",
            "",
            *ema_table(points),
            "",
        ]
    lines += ["## TD residual per curriculum stage (mean over the stage's log rows and seeds)", "", *td_table(rows), ""]
    if (out / "diagnosis.json").exists():
        diagnosis = json.loads((out / "diagnosis.json").read_text())
        lines += ["## Where the gradient goes (diagnose.py, final checkpoints)", "", *diagnosis_table(diagnosis), ""]
    if (out / "coupling.json").exists():
        coupling = json.loads((out / "coupling.json").read_text())
        lines += [
            f"## OT coupling strength (diagnose.py --coupling: 1 − paired / independent mean cost, B = "
            f"{coupling['batch']}, {coupling['trials']} batches)",
            "",
            "| data | exact OT | block-4 OT |",
            "|---|---|---|",
            *(f"| {r['data']} | {r['exact']:.3f} | {r['block 4']:.3f} |" for r in coupling["rows"]),
            "",
        ]
    partial_plot = []
    # `study.py collect` files of runs stopped early: one per device call (gpu_20k.json, gpu_20k_call2.json) or
    # CPU session (cpu_20k*.json)
    stopped_files = sorted(out.glob("gpu_20k*.json")) + sorted(out.glob("cpu_20k*.json"))
    stopped = [r for path in stopped_files for r in json.loads(path.read_text())["runs"]]
    twenty, twenty_plot = twenty_k_section(rows, stopped, out)
    if twenty:
        lines += [
            f"## Question 3 at 20,000 steps on every machine: in-loop digit FID (1 NFE; EDM: {EDM_CURVE_NFE}) every "
            "1,000 steps of each run, finished (results.json) or stopped early (the files below; per row and machine "
            "the run that got furthest), and its Inception FID",
            "",
            *twenty,
            "",
        ]
        partial_plot += twenty_plot
    for path in stopped_files:
        partial, plot = partial_section(json.loads(path.read_text())["runs"], out, stopped_plot(path))
        partial_plot.append(plot)
        gpu = path.name.startswith("gpu")
        how, where = ("`gpu_long.sh`", "on a GPU") if gpu else ("`study.py train --max-time`", "on the CPU")
        lines += [
            f"## Question 3 {where}, stopped early ({path.name}: {how}, each run stopped by --max-time): how far "
            f"each got, and the in-loop digit FID (1 NFE; EDM: {EDM_CURVE_NFE}) of the 20,000-step schedule per row "
            "(mean ± std over its runs)",
            "",
            *partial,
            "",
        ]
    for path in sorted(out.glob("rerun_*.json")):
        lines += [
            f"## Published runs retrained on another machine ({path.name}: `study.py rerun`; headline FID: 1 NFE, "
            f"EDM {EDM_CURVE_NFE} NFE)",
            "",
            *rerun_table(json.loads(path.read_text())["runs"]),
            "",
        ]
    sweep = json.loads((out / "sigma_mid.json").read_text()) if (out / "sigma_mid.json").exists() else None
    if sweep:
        lines += [
            f"## 2-NFE σ_mid (study.py sigma-mid): digit FID of {sweep['num_samples']:,} EMA samples of development "
            f"noise (seeds {sweep['noise_seed']:,} + i, not the evaluation's), mean over seeds",
            "",
            *sigma_mid_table(sweep),
            "",
        ]
        scored = sigma_mid_scored_table(sweep, rows)
        if scored:
            lines += ["### At the index chosen there, scored on the evaluation noise", "", *scored, ""]
    (out / "tables.md").write_text("\n".join(lines) + "\n")
    written = (
        plots(rows, out)
        + ([sigma_mid_plot(sweep, out)] if sweep else [])
        + ([ema_plot(emas, out)] if emas else [])
        + partial_plot
    )
    print(f"wrote {out / 'tables.md'} and {', '.join(written)} from {len(runs)} runs")


if __name__ == "__main__":
    report(json.loads((Path(__file__).parent / "results.json").read_text())["runs"], Path(__file__).parent)
