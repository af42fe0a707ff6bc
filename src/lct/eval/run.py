"""Evaluating a checkpoint (behind `python -m lct.evaluate`): FID / KID / precision / recall at each NFE against
cached reference statistics, the digit metrics, the sigma_mid search, metrics.json and the run's record."""

from __future__ import annotations

import json
from pathlib import Path

from lct.core.sampling import DEFAULT_NFE
from lct.errors import LctError
from lct.eval.bundle import load_bundle
from lct.eval.metrics import GenerativeMetrics
from lct.eval.precision_recall import check_precision_recall_counts
from lct.eval.protocol import (
    authors_extractor,
    authors_sample_count,
    builtin_real_images,
    file_fingerprint,
    sample_features,
    score,
)
from lct.eval.reference import (
    decoded_batches,
    extract_features,
    load_or_compute_reference,
    make_provenance,
    read_reference_images,
    tensor_batches,
)
from lct.eval.samples import resolve_sigma_mid, selected_weights
from lct.eval.sampling import seeded_batches
from lct.io import records
from lct.io.ckpt_file import read_checkpoint_file


def build_reference(args, bundle, metrics: GenerativeMetrics):
    """Cached reference statistics from --reference-images; else a built-in dataset's real images (the reference of
    every published built-in FID, and of --protocol authors); else the checkpoint's decoded training latents."""
    authors = args.protocol == "authors"
    data_cfg = (getattr(bundle, "cfg", None) or {}).get("data")
    path = Path(args.reference) if args.reference else Path(args.out) / f"reference{'_authors' if authors else ''}.pt"
    extractor, progress = metrics.extractor, not args.no_progress
    if args.reference_images:
        dataset, source = f"images:{Path(args.reference_images).resolve()}", "images"
        batches = lambda: tensor_batches(read_reference_images(args.reference_images), args.batch_size)  # noqa: E731
    elif authors or (data_cfg or {}).get("builtin"):  # real images, not their VAE reconstructions
        dataset, images = builtin_real_images(data_cfg)
        source = "images"
        batches = lambda: tensor_batches(images, args.batch_size)  # noqa: E731
    else:
        dm = _datamodule(bundle, args.checkpoint, args.data_root)
        dataset, source = (
            f"{type(dm).__name__}:{getattr(dm, 'builtin', None) or getattr(dm, 'root', None)}",
            "decoded_latents",
        )
        batches = lambda: decoded_batches(dm.train_dataloader(), bundle.codec, args.device)  # noqa: E731
    expected = make_provenance(dataset, args.num_reference, extractor, source)
    compute = lambda: extract_features(extractor, batches(), args.num_reference, progress, args.device)  # noqa: E731
    return load_or_compute_reference(path, expected, compute, args.on_stale)


def _datamodule(bundle, checkpoint, data_root=None):
    """The training datamodule described by the checkpoint's config (its latents are the real data)."""
    cfg = getattr(bundle, "cfg", None)
    if cfg is None or "data" not in cfg:
        raise LctError("the checkpoint carries no data config; pass --reference-images or a --reference cache")
    from lct.builders import build_datamodule
    from lct.data.roots import find_data_root

    if cfg.data.get("root") is not None or data_root:
        cfg.data.root = str(find_data_root(cfg, checkpoint, data_root, getattr(bundle, "codec_state", None)))
    if cfg.data.get("_target_") == "lct.data.LatentDataModule":
        cfg.data.skip_nonfinite = True  # the reference is real data: NaN/inf latents are left out (and logged)
    dm = build_datamodule(cfg)
    dm.setup("fit")
    return dm


def _row(name: str, num_samples: int, results: dict, digits: dict) -> str:
    """One markdown table row: checkpoint | N | FID/KID/P/R per NFE | digit FID/balanced legible (legible at
    coverage) per NFE."""
    cells = [name, str(num_samples)]
    for tag, r in results.items():
        cells.append(f"{tag}: FID {r['fid']:.2f}, KID {r['kid']:.4f}, P {r['precision']:.3f}, R {r['recall']:.3f}")
    for tag, r in digits.items():
        cells.append(
            f"{tag}: digit FID {r['fid']:.3f}, balanced legible {r['legible_balanced']:.3f} (legible "
            f"{r['legible']:.3f} at coverage {r['coverage']:.3f})"
        )
    return "| " + " | ".join(cells) + " |"


def evaluate_digits(args, bundle, sample_fn, sigmas, num_samples: int | None = None) -> dict:
    """Digit FID / legibility / coverage of --num-samples (or num_samples) seeded samples (built-in MNIST)."""
    from lct.eval.digits import DigitScorer

    seeds = range(args.seed, args.seed + (num_samples or args.num_samples))
    batches = (
        images
        for _, _, images in seeded_batches(
            sample_fn, seeds, bundle.latent_shape, sigmas, args.batch_size, bundle.codec.decode, args.device
        )
    )
    return {**DigitScorer(device=args.device).score(batches), "sigmas": list(sigmas)}


def _plot_search(curve: list[dict], path: Path, label: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot([c["index"] for c in curve], [c["fid"] for c in curve], "o-")
    ax.set_xlabel("sigma_mid index (Karras grid)")
    ax.set_ylabel(f"{label} (2 NFE)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def evaluate(args) -> dict:
    """Score the checkpoint as lct.cli.evaluate's options `args` say: metrics.json, results.md, the run's record."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    bundle = load_bundle(args.checkpoint, ema=selected_weights(args.no_ema, args.ema_decay), device=args.device)
    args.nfe = args.nfe or list(DEFAULT_NFE[bundle.kind])
    if args.search and bundle.kind != "consistency":
        raise LctError(
            f"--search sweeps the 2-NFE sigma_mid of a consistency model; {args.checkpoint} is a "
            f"method.kind={bundle.kind} checkpoint: drop --search and compare NFE with --nfe"
        )
    sigma_mid = resolve_sigma_mid(bundle.noise, args.sigma_mid, args.sigma_mid_index)
    sigmas = {nfe: bundle.nfe_sigmas(nfe, sigma_mid) for nfe in args.nfe}  # checks --nfe
    if "inception" in args.metrics:  # before any sample is drawn
        check_precision_recall_counts(args.num_samples, f"--num-samples {args.num_samples}")
    report = {
        "checkpoint": str(args.checkpoint),
        "kind": bundle.kind,
        "protocol": args.protocol,
        "weights": bundle.weights,
        "seed": args.seed,
        "results": {},
    }
    if "digit" in args.metrics:
        report["digits"] = {f"{nfe}nfe": evaluate_digits(args, bundle, bundle.sample, sigmas[nfe]) for nfe in args.nfe}
        if args.search and "inception" not in args.metrics:
            digits = lambda sig, n: evaluate_digits(args, bundle, bundle.sample, sig, n)  # noqa: E731
            report["search"] = sigma_mid_search(args, bundle.noise, digits, out, "digit FID")
    if "inception" in args.metrics:
        inception_report(args, bundle, bundle.sample, sigmas, out, report)
    (out / "metrics.json").write_text(json.dumps(report, indent=2))
    record_scores(args, report)
    row = _row(Path(args.checkpoint).name, args.num_samples, report["results"], report.get("digits", {}))
    (out / "results.md").write_text(row + "\n")
    print(row)
    print(f"wrote {out / 'metrics.json'}")
    return report


def eval_name(args) -> str:
    """The key of these scores in the run's record: inception_1000 (Inception and digits of the EMA), online_1000
    (the student's weights), inception_1000_ema<d> (another EMA), authors_1000 (--protocol authors), digit_1000."""
    base = "authors" if args.protocol == "authors" else "inception" if "inception" in args.metrics else "digit"
    if args.no_ema:
        base = "online"
    return f"{base}_{args.num_samples}" + (f"_ema{args.ema_decay}" if args.ema_decay is not None else "")


def record_scores(args, report: dict) -> None:
    """Add the scores to <run dir>/record.json when the checkpoint lies in a run directory (lct.report reads them)."""
    run_dir = records.run_dir_of(args.checkpoint)
    if run_dir is None:
        return
    step = read_checkpoint_file(args.checkpoint, mmap=True).get("global_step")
    scores = records.eval_scores(report, num_samples=args.num_samples, num_reference=args.num_reference, step=step)
    path = records.add_eval(run_dir, scores, eval_name(args))
    print(f"added the scores to {path} under eval.{eval_name(args)}")


def inception_report(args, bundle, sample_fn, sigmas: dict, out: Path, report: dict) -> None:
    """FID/KID/precision/recall at each NFE (and the sigma_mid search) into report."""
    authors = args.protocol == "authors"
    extra = {"extractor": authors_extractor(args.inception_path)} if authors else {}
    metrics = GenerativeMetrics(
        kid_subset_size=args.kid_subset_size,
        seed=args.seed,
        inception_path=args.inception_path,
        resize_mode=args.resize_mode,
        **extra,
    ).to(args.device)
    count = authors_sample_count if authors else int
    ref = build_reference(args, bundle, metrics)
    metrics.set_reference(ref, 0, 1)
    meta = {"checkpoint": file_fingerprint(args.checkpoint), "weights": bundle.weights}
    noise = bundle.noise

    def evaluate(sigmas, n):
        n = count(n)
        feats = sample_features(
            sample_fn,
            bundle.codec.decode,
            metrics.extractor,
            range(args.seed, args.seed + n),
            bundle.latent_shape,
            sigmas,
            args.batch_size,
            args.device,
            out / ("features_authors" if authors else "features"),
            meta,
            args.chunk_size,
            not args.no_progress,
        )
        return {**score(metrics, feats), "sigmas": list(sigmas)}

    report["results"] = {f"{nfe}nfe": evaluate(sigmas[nfe], args.num_samples) for nfe in args.nfe}
    report["reference"] = ref.provenance
    if args.search:
        report["search"] = sigma_mid_search(args, noise, evaluate, out, "FID")


def sigma_mid_search(args, noise, evaluate, out: Path, label: str) -> dict:
    """2-NFE scores at each --search-indices point of the sigma_mid grid: search.json, search.png, the best."""
    n = args.search_num_samples or args.num_samples
    at = lambda i: noise.grid_sigma(i, noise.mid_grid)  # noqa: E731
    curve = [{"index": i, "sigma_mid": at(i), **evaluate(noise.nfe_sigmas(2, at(i)), n)} for i in args.search_indices]
    best = min(curve, key=lambda c: c["fid"])
    search = {"metric": label, "num_samples": n, "seed": args.seed, "curve": curve, "best": best}
    (out / "search.json").write_text(json.dumps(search, indent=2))
    _plot_search(curve, out / "search.png", label)
    print(f"sigma_mid search: best {label} {best['fid']:.3f} at index {best['index']} (sigma {best['sigma_mid']:.4f})")
    return search
