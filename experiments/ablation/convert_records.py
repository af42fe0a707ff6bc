"""One-off: the study's per-run JSONs (runs/*.json, the stopped runs of cpu_20k*.json / gpu_20k*.json, the reruns
of rerun_intel_2026-12-05.json) as record.json files under records/ and reruns/ (docs/records.md); `check` then
verifies that every value of results.json and of those files is in the records. It imports study.py's ROWS, so it
runs from a copy of commit 38c6bc0's experiments/ablation (`git archive 38c6bc0 experiments/ablation | tar -x -C
/tmp/old`) and writes into OUT:

    .venv/bin/python /tmp/old/experiments/ablation/convert_records.py
    .venv/bin/python /tmp/old/experiments/ablation/convert_records.py check
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir

HERE = Path(__file__).resolve().parent
ROOT = Path("/work/main")
OUT = ROOT / "experiments" / "ablation"
sys.path.insert(0, str(HERE))
from study import ROWS, row_steps  # noqa: E402  (the row definitions, before study.py goes)

INCEPTION = ("fid", "kid", "kid_std", "precision", "recall", "num_fake", "num_real", "kid_subset_size", "sigmas")
INCEPTION_SAME = ("extractor", "resize")
DIGITS = ("fid", "legible", "coverage", "num_samples", "sigmas")
STOPPED = {  # file -> (folder tag, why the run stopped)
    "gpu_20k.json": ("gpu_call1", "stopped by +trainer.max_time in a 15-minute lent-GPU session"),
    "gpu_20k_call2.json": ("gpu_call2", "stopped by +trainer.max_time in a 15-minute lent-GPU session"),
    "cpu_20k.json": ("cpu_stopped", "stopped at a session deadline; later resumed to 20,000 steps (seed0)"),
    "cpu_20k_wd0.json": ("cpu_stopped", "stopped by +trainer.max_time at a session deadline"),
}


def choices(overrides: list[str]) -> dict:
    """Every config group's option for these overrides, composed from conf/ (hydra/* groups left out)."""
    ovr = [o for o in overrides if not o.startswith(("seed=", "hydra."))]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=ovr, return_hydra_config=True)
    return {k: v for k, v in cfg.hydra.runtime.choices.items() if not k.startswith("hydra")}


def per_nfe(results: dict, keys: tuple, same: tuple = (), prefix: str = "") -> dict:
    """{'1nfe': {fid: ..}, ..} -> {fid_1nfe: .., ...} (lct.records.eval_scores' spelling); `same` keys once."""
    out = {f"{prefix}{k}_{n}": v[k] for n, v in results.items() for k in keys if k in v}
    for k in same:
        values = {v[k] for v in results.values() if k in v}
        assert len(values) <= 1, (k, values)
        if values:
            out[k] = values.pop()
    return out


def evals(metrics: dict, step: int) -> dict:
    """lct.evaluate's scores as the record's `eval` protocols: the EMA's Inception and digit scores, the online
    weights' digit scores, the other EMAs' (digit keys prefixed digits_, as lct.records.eval_scores writes them)."""
    base = {"num_samples": 1000, "num_reference": 1000, "seed": 10_000, "reference": "ref1000 seed 0", "step": step}

    def scores(m: dict) -> dict:
        return {**per_nfe(m["results"], INCEPTION, INCEPTION_SAME), **per_nfe(m["digits"], DIGITS, prefix="digits_")}

    out = {"inception_1000": {**base, **scores(metrics)}}
    out["online_1000"] = {**base, "weights": "online", **per_nfe(metrics["digits_online"], DIGITS, prefix="digits_")}
    for decay, m in metrics.get("emas", {}).items():
        out[f"inception_1000_ema{decay}"] = {**base, **scores(m)}
    return out


def in_loop(curves: dict) -> dict:
    """metrics.last / best over the in-loop digit metrics (best: min FID, max legible/coverage)."""
    last, best = {}, {}
    for k, pts in curves.items():
        if k.startswith("digits/") and pts:
            last[k] = {"value": pts[-1][1], "step": pts[-1][0]}
            pick = min if "fid" in k else max
            s, v = pick(pts, key=lambda p: p[1])
            best[k] = {"value": v, "step": s}
    return {"last": last, "best": best}


def host(device: str, threads: int, hostname: str) -> dict:
    gpu = device.split(": ", 1)[1].split(" (")[0] if device.startswith("gpu") else None
    cpu = device.split(": ", 1)[1].rsplit(",", 1)[0] if device.startswith("cpu") else None
    keys = ("torch", "lightning", "lct", "git_commit", "git_dirty")
    return {"hostname": hostname, "cpu": cpu, "threads": threads, "gpu": gpu, **dict.fromkeys(keys)}


def record(r: dict, overrides: list[str], status: str, error: str | None, total: int, grid: str | None) -> dict:
    """One record.json from a study run entry `r` (row, seed, steps, curves, device, ...)."""
    curves = r["curves"]
    loss = curves.get("train/loss")
    metrics = r.get("metrics") or (r.get("score") or {}).get("metrics")
    step = (r.get("score") or {}).get("step", r["steps"])
    config = r.get("config")
    study = {k: v for k, v in r.items() if k not in ("metrics", "curves", "config", "score")}
    if r.get("score"):
        study["eval_wall_s"] = r["score"]["eval_wall_s"]
    return {
        "schema": 1,
        "lct_version": None,
        "run_dir": config["paths"]["output_dir"] if config else f"outputs/study/{r['row']}/seed{r['seed']}",
        "experiment": config["experiment_name"] if config else None,
        "choices": choices(overrides),
        "overrides": overrides,
        "seed": r["seed"],
        "config": config,
        "status": status,
        "error": error,
        "steps": {"done": r["steps"], "total": total},
        "wall_seconds": r["train_wall_s"],
        "steps_per_second": round(r["steps"] / r["train_wall_s"], 3),
        "host": host(r["device"], r["threads"], r["host"]),
        "train_loss": loss[-1][1] if loss else None,
        "metrics": in_loop(curves),
        "curves": curves,
        "eval": evals(metrics, step) if metrics else {},
        "checkpoint": None,  # the checkpoints stayed in outputs/ of the machine that trained them
        "sample_grids": [grid] if grid else [],
        "started": None,
        "updated": None,
        "study": study,  # the study's own fields as it recorded them (row, overrides as run, device, ...)
    }


def row_overrides(row: str, seed: int, as_run: list[str]) -> list[str]:
    """The row's definition (study.py ROWS) with its per-seed init checkpoint as run, then the seed."""
    init = [o for o in as_run if o.startswith("init_from=")]
    return [*ROWS[row], *init, f"seed={seed}"]


def write(path: Path, rec: dict) -> None:
    path.mkdir(parents=True, exist_ok=True)
    text = json.dumps({k: v for k, v in rec.items() if k != "curves"}, indent=1)
    curves = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v, separators=(',', ':'))}" for k, v in rec["curves"].items())
    (path / "record.json").write_text(f'{text[:-2]},\n "curves": {{\n{curves}\n }}\n}}\n')  # a curve per line


def convert() -> None:
    for f in sorted((HERE / "runs").glob("*.json")):
        r = json.loads(f.read_text())
        grid = HERE / "grids" / f"{r['row']}_seed{r['seed']}.png"
        rel = f"../../../grids/{grid.name}" if grid.exists() else None
        ovr = row_overrides(r["row"], r["seed"], r["overrides"])
        write(OUT / "records" / r["row"] / f"seed{r['seed']}", record(r, ovr, "finished", None, r["steps"], rel))
    for name, (tag, why) in STOPPED.items():
        for r in json.loads((HERE / name).read_text())["runs"]:
            ovr = [o for o in r["overrides"] if not o.startswith("seed=")] + [f"seed={r['seed']}"]
            variant = f"_{r['variant']}" if tag == "gpu_call1" else ""
            rec = record(r, ovr, "preempted", why, row_steps(r["row"]), None)
            write(OUT / "records" / r["row"] / f"seed{r['seed']}.{tag}{variant}", rec)
    for e in json.loads((HERE / "rerun_intel_2026-12-05.json").read_text())["runs"]:
        r = {**e, "steps": row_steps(e["row"]), "train_wall_s": e["rerun_train_wall_s"], "curves": {}}
        r |= {"device": e["rerun_device"], "threads": e["rerun_threads"], "host": None}
        r["metrics"] = {"results": {"1nfe": {"fid": e["rerun_fid"]}}, "digits": {}, "digits_online": {}}
        ovr = row_overrides(e["row"], e["seed"], [])
        rec = record(r, ovr, "finished", None, r["steps"], None)
        rec["eval"] = {"inception_1000": rec["eval"]["inception_1000"]}  # the rerun file kept the 1-NFE FID only
        write(OUT / "reruns" / e["row"] / f"seed{e['seed']}", rec)


def leaves(node, path=()):
    """Every leaf of a JSON value as (path, value)."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from leaves(v, (*path, k))
    else:
        yield path, node


def where(path: tuple) -> tuple:
    """Where a leaf of a study entry lives in its record."""
    if path[0] == "score":
        if path[1] != "metrics":
            return ("eval", "inception_1000", "step") if path[1] == "step" else ("study", path[1])
        path = path[1:]
    if path[0] == "metrics":
        emas = path[1] == "emas"
        group, n, k = path[3:6] if emas else path[1:4]
        proto = "online_1000" if group == "digits_online" else "inception_1000" + (f"_ema{path[2]}" if emas else "")
        prefix = "" if group == "results" else "digits_"
        return ("eval", proto, k if k in INCEPTION_SAME else f"{prefix}{k}_{n}")
    if path[0] in ("curves", "config"):
        return path
    return ("study", *path)


def get(rec: dict, path: tuple):
    for k in path:
        rec = rec[k]
    return rec


def check() -> None:
    """Every number (every leaf) of results.json, the stopped-run files and the rerun file equals its record's."""
    sources = [("results.json", "", lambda r: f"seed{r['seed']}", "records")]
    sources += [
        (n, t, lambda r, t=t: f"seed{r['seed']}.{t}" + (f"_{r['variant']}" if t == "gpu_call1" else ""), "records")
        for n, (t, _) in STOPPED.items()
    ]
    sources += [("rerun_intel_2026-12-05.json", "", lambda r: f"seed{r['seed']}", "reruns")]
    total = 0
    for name, _, folder, tree in sources:
        entries = json.loads((HERE / name).read_text())["runs"]
        for r in entries:
            rec = json.loads((OUT / tree / r["row"] / folder(r) / "record.json").read_text())
            for path, value in leaves(r):
                got = get(rec, where(path))
                assert got == value or (isinstance(value, list) and got == value), (name, r["row"], path, value, got)
                total += 1
            if name.startswith("rerun"):
                assert rec["eval"]["inception_1000"]["fid_1nfe"] == r["rerun_fid"]
        print(f"{name}: {len(entries)} runs, every value equal in {tree}/")
    print(f"checked {total} values: all equal")


if __name__ == "__main__":
    check() if sys.argv[1:] == ["check"] else convert()
