"""Where each robust metric puts its gradient: per curriculum stage, the share of the consistency term's
gradient carried by outlier samples and by the high-noise samples, for pseudo-Huber (iCT) and Cauchy (sLCT)
on the same TD residuals (experiments/ablation/README.md, question 2).

    python experiments/ablation/diagnose.py outputs/study/ilct/seed0/checkpoints/last.ckpt [more.ckpt ...] \
        --out experiments/ablation/diagnosis.json
    python experiments/ablation/diagnose.py --coupling experiments/ablation/coupling.json   # OT strength

For a per-sample metric rho(m), m = mean_D d^2, the gradient with respect to d is lambda * rho'(m) * 2 d / D,
so sample i pulls with magnitude g_i ∝ lambda_i rho'(m_i) sqrt(m_i):
  pseudo-Huber: rho'(m) = 1 / (2 sqrt(m + c^2))   -> g ∝ lambda for m >> c^2 (every residual pulls alike)
  Cauchy:       rho'(m) = 1 / (2 c^2 + m)          -> g ∝ lambda / sqrt(m) for m >> c^2 (large residuals fade)
The residuals are the checkpoint's own (its student against its stop-gradient target, its coupling, its c),
drawn with a fixed seed at the middle step of each curriculum stage.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

SIGMA_HIGH = 1.0  # "high noise": sigma_i above this (1-NFE generation starts at sigma_max = 80)


def grad_magnitudes(m: torch.Tensor, lam: torch.Tensor, c: float) -> dict[str, torch.Tensor]:
    c2 = c * c
    return {
        "pseudo_huber": lam * m.sqrt() / (2 * (m + c2).sqrt()),
        "cauchy": lam * m.sqrt() / (2 * c2 + m),
    }


def shares(g: torch.Tensor, outlier: torch.Tensor, high: torch.Tensor) -> dict[str, float]:
    total = g.sum()
    return {"outliers": float(g[outlier].sum() / total), "high_noise": float(g[high].sum() / total)}


@torch.no_grad()
def diagnose(path: str, batches: int = 8, seed: int = 1234) -> dict:
    from lct.builders import build_datamodule, build_objective
    from lct.io.checkpoint import load_for_sampling
    from lct.io.ckpt_file import read_checkpoint_file

    bundle = load_for_sampling(path, ema=False)  # the student whose residuals the run trained on
    student, cfg = bundle.model, bundle.cfg
    ckpt = read_checkpoint_file(path, mmap=True)  # its step and the objective's state (c) only
    dm = build_datamodule(cfg)
    dm.setup("fit")
    K = int(ckpt["global_step"])
    objective = build_objective(cfg, student, K, dm.latent_shape)
    c_state = ckpt["state_dict"].get("objective._extra_state", {}).get("c")
    if c_state:
        objective.c.load_state_dict(c_state)
    torch.manual_seed(seed)
    objective.gen_idx.manual_seed(seed)
    objective.gen_noise.set_state(None)
    loader = iter(dm.train_dataloader())
    stage_steps = {}
    for k in range(K):
        stage_steps.setdefault(objective.n_scales(k), []).append(k)
    result = {"checkpoint": str(path), "steps": K, "stages": []}
    for n, steps in stage_steps.items():
        k = steps[len(steps) // 2]
        ms, lams = [], []
        for _ in range(batches):
            out = objective.step(student, next(loader), k)
            if not out.finite:
                continue
            d = out.terms.residual.flatten(1)
            ms.append(d.square().mean(1))
            lams.append(out.terms.weight)
        m, lam = torch.cat(ms).double(), torch.cat(lams).double()
        sigmas, _ = objective.grid(n)
        lam_grid = 1.0 / (sigmas[:-1] - sigmas[1:])  # lambda_j on the descending grid
        sig_i = sigmas[:-1][(lam[:, None] / lam_grid[None]).log().abs().argmin(1)]
        q1, q3 = torch.quantile(m, torch.tensor([0.25, 0.75], dtype=m.dtype))
        outlier, high = m > q3 + 3 * (q3 - q1), sig_i > SIGMA_HIGH
        c = float(out.c)
        g = grad_magnitudes(m, lam, c)
        result["stages"].append(
            {
                "N": n,
                "step": k,
                "c": c,
                "m_median": float(m.median()),
                "c2_over_median_m": c * c / float(m.median()),
                "outlier_frac": float(outlier.double().mean()),
                "high_noise_frac": float(high.double().mean()),
                **{name: shares(v, outlier, high) for name, v in g.items()},
            }
        )
    return result


def coupling_strength(root: str = "data/mnist", batch: int = 128, trials: int = 20, seed: int = 0) -> dict:
    """How tightly each OT coupling ties x0 to its unit noise (pair_cost_reduction, mean over `trials`
    batches): on the built-in latents, and on isotropic Gaussian data of the same scale (sigma_data = 0.5) at
    D = 256 and at the paper's D = 4,096."""
    import numpy as np

    from lct.core import ot_permutation, pair_cost_reduction, sq_euclidean_cost
    from lct.data.loader import LatentBatchDataset
    from lct.data.shards import LatentShards, load_stats, read_metadata

    meta = read_metadata(root)
    data = LatentBatchDataset(LatentShards(root, meta), *load_stats(root, meta), sigma_data=0.5)
    rng, g = np.random.default_rng(seed), torch.Generator().manual_seed(seed)
    dim = int(np.prod(data.shards.shape))
    sources = {
        f"built-in latents, D = {dim}": lambda: data[rng.choice(len(data), batch, replace=False)],
        "isotropic, D = 256": lambda: 0.5 * torch.randn(batch, 256, generator=g),
        "isotropic, D = 4096 (the paper's 32x32x4)": lambda: 0.5 * torch.randn(batch, 4096, generator=g),
    }
    out = {"batch": batch, "trials": trials, "rows": []}
    for name, draw in sources.items():
        r = {"exact": [], "block 4": []}
        for _ in range(trials):
            x0 = draw()
            cost = sq_euclidean_cost(x0, torch.randn(x0.shape, generator=g))
            r["exact"].append(pair_cost_reduction(cost, ot_permutation(cost)))
            r["block 4"].append(pair_cost_reduction(cost, ot_permutation(cost, block=4)))
        out["rows"].append({"data": name, **{k: float(np.mean(v)) for k, v in r.items()}})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoints", nargs="*")
    ap.add_argument("--out", default=None)
    ap.add_argument("--batches", type=int, default=8, help="batches of the run's size per stage")
    ap.add_argument("--coupling", metavar="JSON", help="measure the OT coupling strength into JSON")
    args = ap.parse_args()
    if args.coupling:
        result = coupling_strength()
        for row in result["rows"]:
            print(f"  {row['data']}: exact OT {row['exact']:.3f}, block-4 OT {row['block 4']:.3f}")
        Path(args.coupling).write_text(json.dumps(result, indent=1))
    if not args.checkpoints:
        return
    results = [diagnose(p, args.batches) for p in args.checkpoints]
    for r in results:
        print(r["checkpoint"])
        for s in r["stages"]:
            print(
                f"  N={s['N']:4d} c={s['c']:.4f} median m={s['m_median']:.2e} outliers {s['outlier_frac']:.3f} "
                f"high-noise {s['high_noise_frac']:.2f} | share of gradient on outliers / high noise: "
                f"pH {s['pseudo_huber']['outliers']:.3f} / {s['pseudo_huber']['high_noise']:.3f}, "
                f"Cauchy {s['cauchy']['outliers']:.3f} / {s['cauchy']['high_noise']:.3f}"
            )
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
