"""The runs' record.json files as one table, seeds averaged (behind `python -m lct.report`).

Runs that differ only in seed form a group (by default the key is the config-group choices plus the non-seed
command-line overrides; `by` names the keys instead); each group is one Markdown row of mean ± std (sample std
over its runs) of every metric. Unfinished and failed runs are listed in a second table, never averaged in.
Records are read by lct.io.records (one loader for every version); lct.io.report_plots draws the figures.
"""

from __future__ import annotations

import math
import os
import statistics
from pathlib import Path

from lct.errors import LctError

DASH = "—"  # a field a record lacks (another machine, an older lct)
EVAL_PREFIXES = ("fid_", "precision_", "recall_", "digits_fid_", "digits_legible_")  # default `eval` columns
PLOT_DEFAULTS = ("digits/fid_1nfe", "train/loss")  # the first one the runs logged is plotted without --metric
ORDER_FIRST = ("experiment", "data", "backbone", "norm", "metric", "c_schedule", "diffusion", "coupling")
ORDER_LAST = ("overrides",)


def load_runs(dirs: list[str]) -> list[dict]:
    """Every record below `dirs` (in the order given, then by path); a directory without one is an error."""
    from lct.io.records import find_records, load_record

    runs = []
    for d in dirs:
        if not Path(d).is_dir():
            raise LctError(f"{d}: no such directory; pass run directories or folders holding them")
        paths = find_records([d])
        if not paths:
            raise LctError(f"{d}: no record.json below it; `python -m lct.train` writes one into each run directory")
        runs += [{**load_record(p), "_path": p} for p in paths]
    return runs


def override_key(override: str) -> str:
    """The config key an override sets (`+backbone.num_blocks=1` -> backbone.num_blocks)."""
    return override.split("=", 1)[0].lstrip("+~")


def is_path(value) -> bool:
    """Absolute paths (run dirs, init checkpoints) differ per run and machine, so they never split a group."""
    return isinstance(value, str) and value.strip("'\"").startswith("/")


def run_keys(run: dict, joined: bool = False) -> dict:
    """What a run may be grouped by: its choices and its non-seed, non-path overrides as {key: value};
    `joined`: the overrides as one "overrides" entry (the default grouping's single column for them)."""
    keys = {k: str(v) if v is not None else "null" for k, v in (run["choices"] or {}).items()}
    extra = {}
    for o in run["overrides"] or []:
        key, _, value = o.partition("=")
        if override_key(o) not in ("seed", "hydra.run.dir") and key not in keys and not is_path(value):
            extra[override_key(o)] = value
    if joined:
        return {**keys, "overrides": " ".join(f"{k}={v}" for k, v in sorted(extra.items())) or DASH}
    return {**keys, **extra}


def flat_config(node, prefix: str = "") -> dict:
    """The resolved config as {dotted key: value}, without seeds and paths (these differ between seeds)."""
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            out.update(flat_config(v, f"{prefix}{k}."))
        return out
    key = prefix[:-1]
    return {} if key.rsplit(".", 1)[-1] == "seed" or key.startswith("paths.") or is_path(node) else {key: node}


def run_metrics(run: dict) -> dict:
    """The run's scalar results: last train loss, `eval` scores as <protocol>/<key>, the last in-loop metrics."""
    out = {"train/loss": run["train_loss"]}
    for protocol, scores in (run["eval"] or {}).items():
        for k, v in (scores or {}).items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("num_samples", "num_reference"):
                out[f"{protocol}/{k}"] = v
    for k, entry in ((run["metrics"] or {}).get("last") or {}).items():
        out[k] = entry.get("value") if isinstance(entry, dict) else entry
    return {k: v for k, v in out.items() if isinstance(v, (int, float))}


def default_metrics(runs: list[dict]) -> list[str]:
    """Train loss, every FID / precision / recall in `eval`, then every in-loop metric, as recorded."""
    seen = list(dict.fromkeys(k for r in runs for k in run_metrics(r)))
    evals = [k for k in seen if "/" in k and k.split("/", 1)[1].startswith(EVAL_PREFIXES) and k in eval_keys(runs)]
    loop = [k for k in seen if any(k in ((r["metrics"] or {}).get("last") or {}) for r in runs)]
    return ["train/loss", *evals, *[k for k in loop if k not in evals]]


def eval_keys(runs: list[dict]) -> set[str]:
    """The `eval` score names (<protocol>/<key>) any run recorded."""
    return {f"{p}/{k}" for r in runs for p, s in (r["eval"] or {}).items() for k in (s or {})}


def group_runs(runs: list[dict], by: list[str] | None) -> list[dict]:
    """Runs by key (choices + overrides, or `by`), in first-seen order; each group notes what it merges."""
    groups: dict[tuple, dict] = {}
    for run in runs:
        keys = run_keys(run, joined=not by)
        if by:
            config = flat_config(run["config"] or {})
            keys = {k: str(keys.get(k, config.get(k, DASH))) for k in by}
        g = groups.setdefault(tuple(sorted(keys.items())), {"keys": keys, "runs": []})
        g["runs"].append(run)
    return list(groups.values())


def hidden_differences(group: dict, by: list[str] | None) -> list[str]:
    """What differs inside a group but is not its columns: choices and overrides (under --by), else config keys."""
    sources = [run_keys] if by else []
    sources.append(lambda r: flat_config(r["config"] or {}))
    for source in sources:
        flats = [source(r) for r in group["runs"]]
        differ = []
        for k in sorted(set().union(*flats) - set(group["keys"])):
            values = sorted({repr(f[k]) for f in flats if k in f})  # a key an older lct lacks is no difference
            if len(values) > 1:
                differ.append(f"{k} ({', '.join(values)})")
        if differ:
            return differ
    return []


def fmt(values: list[float], n: int) -> str:
    """mean ± std at a precision that suits the size; '(k/n)' when only k of the group's n runs have it."""
    if not values:
        return DASH
    mean = statistics.fmean(values)
    digits = 1 if abs(mean) >= 10 else 2 if abs(mean) >= 1 else 3
    text = f"{mean:.{digits}f}" + (f" ± {statistics.stdev(values):.{digits}f}" if len(values) > 1 else "")
    return text + (f" ({len(values)}/{n})" if len(values) < n else "")


def varying_columns(groups: list[dict]) -> list[str]:
    """The grouping keys whose values differ between groups (all of them when there is one group)."""
    keys = list(dict.fromkeys(k for g in groups for k in g["keys"]))
    first_seen = {k: i for i, k in enumerate(keys)}
    rank = {k: i for i, k in enumerate(ORDER_FIRST)} | {k: len(ORDER_FIRST) + 1 for k in ORDER_LAST}
    keys.sort(key=lambda k: (rank.get(k, len(ORDER_FIRST)), first_seen[k]))
    differ = [k for k in keys if len({g["keys"].get(k, DASH) for g in groups}) > 1]
    return differ or keys[:1]


def summary_rows(groups: list[dict], columns: list[str], metrics: list[str]) -> list[list[str]]:
    """One row per group: its column values, n, seeds, then mean ± std of each metric."""
    rows = []
    for g in groups:
        values = [run_metrics(r) for r in g["runs"]]
        seeds = ",".join(str(r["seed"]) if r["seed"] is not None else DASH for r in g["runs"])
        cells = [fmt([v[m] for v in values if m in v and math.isfinite(v[m])], len(values)) for m in metrics]
        rows.append([g["keys"].get(c, DASH) for c in columns] + [str(len(g["runs"])), seeds, *cells])
    return rows


def unfinished_rows(runs: list[dict], metric: str) -> list[list[str]]:
    """Run dir, status, steps done/total, `metric` where it was scored (e.g. where a run stopped), error."""
    rows = []
    for r in runs:
        steps = r["steps"] or {}
        done = f"{steps.get('done', DASH)}/{steps.get('total', DASH)}"
        where = r["_path"].parent.resolve()
        shown = where.relative_to(Path.cwd()) if where.is_relative_to(Path.cwd()) else where
        value = run_metrics(r).get(metric)
        score = fmt([value], 1) if value is not None else DASH
        rows.append([str(shown), r["status"] or DASH, done, score, r["error"] or DASH])
    return rows


def markdown(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table (pipes inside cells escaped)."""
    lines = [header, ["---"] * len(header), *rows]
    return "\n".join("| " + " | ".join(str(c).replace("|", "\\|") for c in line) + " |" for line in lines)


def build(runs: list[dict], by: list[str] | None, metrics: list[str] | None) -> dict:
    """The report's tables and groups; unknown --by / --metric keys are errors naming the known ones."""
    finished = [r for r in runs if r["status"] == "finished"]
    if by:
        known = set().union(*(set(run_keys(r)) | set(flat_config(r["config"] or {})) for r in runs))
        if unknown := [k for k in by if k not in known]:
            raise LctError(
                f"--by {','.join(unknown)}: not a choice, override or config key of these runs; "
                f"choices: {', '.join(sorted({k for r in runs for k in (r['choices'] or {})}))}"
            )
    cols = default_metrics(finished or runs)
    known_metrics = set(cols) | {k for r in runs for k in run_metrics(r)} | eval_keys(runs)
    known_metrics |= {k for r in runs for k in (r["curves"] or {})}
    if metrics and (unknown := [m for m in metrics if m not in known_metrics]):
        names = sorted(known_metrics)
        shown = ", ".join(names[:40]) + (f", ... ({len(names) - 40} more)" if len(names) > 40 else "")
        raise LctError(f"--metric {','.join(unknown)}: not recorded by these runs; known: {shown}")
    cols = [m for m in metrics if m in cols or m in {k for r in runs for k in run_metrics(r)}] if metrics else cols
    groups = group_runs(finished, by)
    columns = by or varying_columns(groups)
    for g in groups:  # where each group's runs sit: a column once groups sit in folders of their own
        g["keys"]["folder"] = Path(os.path.commonpath([r["_path"].parent.parent.resolve() for r in g["runs"]])).name
    if len({g["keys"]["folder"] for g in groups}) > 1:
        columns = ["folder", *columns]
    return {
        "groups": groups,
        "header": [*columns, "n", "seeds", *cols],
        "rows": summary_rows(groups, columns, cols),
        "unfinished": unfinished_rows([r for r in runs if r["status"] != "finished"], (cols or ["train/loss"])[0]),
        "unfinished_metric": (cols or ["train/loss"])[0],
        "columns": columns,
        "warnings": [
            f"warning: the {len(g['runs'])} runs of {label(g, columns)} differ in {'; '.join(d[:4])}"
            f"{' and more' if len(d) > 4 else ''}, which the grouping does not show: add those keys to --by to split"
            for g in groups
            if (d := hidden_differences(g, by))
        ],
    }


def label(group: dict, columns: list[str]) -> str:
    """A group's name: its folder when groups have their own, else its set column values (`experiment=ilct`)."""
    if "folder" in columns:
        return group["keys"]["folder"]
    shown = [f"{c}={v}" for c in columns if (v := group["keys"].get(c, DASH)) not in (DASH, "null")]
    return " ".join(shown) or "defaults"


def render(report: dict) -> str:
    """Both tables as Markdown."""
    text = markdown(report["header"], report["rows"]) if report["rows"] else "No finished runs."
    if report["unfinished"]:
        text += "\n\nUnfinished or failed (not averaged):\n\n"
        header = ["run dir", "status", "steps", report["unfinished_metric"], "error"]
        text += markdown(header, report["unfinished"])
    return text + "\n"
