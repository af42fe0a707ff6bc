"""Which blocks of a run's network have died: per UNet block of the student, the share of its weights that
weight decay drove to (almost) zero, |w| < 1e-30, and the largest |w| left in its norms' scales
(experiments/ablation/README.md, "Dead blocks").

    python experiments/ablation/dead_blocks.py outputs/study/ilct_20k/seed0/checkpoints/last.ckpt [more.ckpt ...] \
        --out experiments/ablation/dead_blocks.json

Weights whose loss gradient vanishes are taken towards zero by RAdam's coupled weight decay and end in or
below the denormal range (benchmarks/README.md, "CPU: denormal weights"). A dead block passes only its skip
connection.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

DEAD = 1e-30  # far below any weight that moves an fp32 activation (fp32's smallest normal is 1.18e-38)


def block_of(name: str) -> str:
    """'backbone.enc.7.attn.qkv.weight' -> 'enc.7'; parameters outside the numbered blocks keep their module."""
    parts = name.removeprefix("backbone.").split(".")
    return ".".join(parts[:2]) if parts[0] in ("enc", "dec") else parts[0]


def dead_tensors(state: dict[str, torch.Tensor]) -> dict[str, tuple[int, int]]:
    """(weights below DEAD, weights) of every floating-point tensor."""
    return {k: (int((w.abs() < DEAD).sum()), w.numel()) for k, w in state.items() if w.is_floating_point()}


def dead_blocks(state: dict[str, torch.Tensor], tensors: dict[str, tuple[int, int]] | None = None) -> dict[str, dict]:
    """Per block: its parameter count, the share of them below DEAD, and the largest |weight| of its norms (the
    scale; non-scaling LayerNorm keeps it frozen at 1; None for a block without a norm). `tensors`: the state's
    dead_tensors, when already counted."""
    count, dead, scale = defaultdict(int), defaultdict(int), {}
    for name, (d, n) in (tensors or dead_tensors(state)).items():
        block = block_of(name)
        count[block] += n
        dead[block] += d
        if ".norm" in name and name.endswith(".weight"):
            scale[block] = max(scale.get(block, 0.0), float(state[name].abs().max()))
    return {
        b: {"params": count[b], "dead_share": round(dead[b] / count[b], 4), "max_norm_scale": scale.get(b)}
        for b in count
    }


def markdown(report: dict[str, dict]) -> list[str]:
    """The README's table: one line per checkpoint, by schedule, experiment and step."""
    lines = [
        "| run (norm) | step | weights dead | blocks ≥ 50% dead | largest scale of `dec.0`'s norms | attention blocks "
        "with only q and k dead |",
        "|---|---|---|---|---|---|",
    ]
    order = lambda v: (v["schedule_steps"], v["experiment"], v.get("weight_decay") == 0, v["seed"], v["step"])  # noqa: E731
    for v in sorted(report.values(), key=order):
        dead = ", ".join(f"`{b}`" for b, x in v["blocks"].items() if x["dead_share"] >= 0.5) or "—"
        # q and k are two thirds of a fused qkv projection: dead alone, attention is a uniform average of v
        qk = {k.split(".attn")[0] for k, s in v["dead_tensors"].items() if k.endswith("attn.qkv.weight") and s < 0.9}
        scale = v["blocks"].get("dec.0", {}).get("max_norm_scale")
        scale = "1 (frozen)" if v["norm"] == "nsln" else "—" if scale is None else f"{scale:.2g}"
        setup = v["norm"] + (", no weight decay" if v.get("weight_decay") == 0 else "")
        run = f"`{v['experiment']}` seed {v['seed']}, {v['schedule_steps']:,}-step schedule ({setup})"
        lines.append(f"| {run} | {v['step']:,} | {v['dead_share']:.1%} | {dead} | {scale} | {len(qk)} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("ckpts", nargs="+", help="lct.train checkpoints (the student's weights are read)")
    ap.add_argument("--out", type=Path, help="add {checkpoint: {step, experiment, blocks}} to this JSON")
    args = ap.parse_args()
    from lct.io.ckpt_file import read_checkpoint_file

    report = {}
    for path in args.ckpts:
        ckpt = read_checkpoint_file(path)
        state = {k.removeprefix("student."): v for k, v in ckpt["state_dict"].items() if k.startswith("student.")}
        tensors = dead_tensors(state)
        blocks = dead_blocks(state, tensors)
        total = sum(n for _, n in tensors.values())
        share = sum(d for d, _ in tensors.values()) / total
        cfg = ckpt.get("lct", {}).get("config", {})
        run = {"experiment": cfg.get("experiment_name"), "seed": cfg.get("seed")}
        run |= {"schedule_steps": cfg.get("trainer", {}).get("max_steps"), "norm": cfg.get("backbone", {}).get("norm")}
        run["weight_decay"] = cfg.get("optimizer", {}).get("weight_decay")
        report[str(path)] = {"step": int(ckpt["global_step"]), **run, "dead_share": round(share, 4)}
        report[str(path)]["blocks"] = blocks
        report[str(path)]["dead_tensors"] = {k: round(d / n, 3) for k, (d, n) in tensors.items() if d / n >= 0.5}
        dead = [b for b, v in blocks.items() if v["dead_share"] >= 0.5]
        print(f"{path}: step {ckpt['global_step']}, {share:.1%} of {total:,} weights dead; blocks >= 50%: {dead}")
    if args.out:
        report = merged(args.out, report)
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    print("\n".join(markdown(report)))


def merged(path: Path, report: dict[str, dict]) -> dict[str, dict]:
    """`report` added to the checkpoints already in the JSON at `path` (a checkpoint counted again replaces its entry),
    so the table grows run by run: the checkpoints of earlier sessions are gone."""
    return (json.loads(path.read_text()) if path.exists() else {}) | report


if __name__ == "__main__":
    main()
