"""The ablation study's report (experiments/ablation/report.py): tables from results.json records alone."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

ABLATION = Path(__file__).resolve().parents[1] / "experiments" / "ablation"
sys.path.insert(0, str(ABLATION))

import dead_blocks  # noqa: E402
import diagnose  # noqa: E402
import report  # noqa: E402
import study  # noqa: E402


def record(row: str, seed: int, fid1: float, fid2: float) -> dict:
    scores = lambda f: {"fid": f, "kid": 0.01, "precision": 0.2, "recall": 0.5}  # noqa: E731
    digits = lambda f: {"fid": f / 10, "legible": 0.5, "coverage": 0.9}  # noqa: E731
    curves = {
        "train/N": [[24, 11.0], [49, 11.0], [74, 21.0]],
        "train/c": [[24, 0.01], [49, 0.01], [74, 0.02]],
        "train/td_std": [[24, 0.1], [49, 0.3], [74, 0.05]],
        "train/td_kurtosis": [[24, 3.0], [49, 5.0], [74, 7.0]],
        "train/td_outer_fence": [[24, 0.01], [49, 0.03], [74, 0.0]],
        "digits/fid_1nfe": [[50, fid1 / 5], [100, fid1 / 10]],
    }
    return {
        "row": row,
        "seed": seed,
        "steps": 100,
        "init_edm_steps": 0,
        "train_wall_s": 600.0,
        "device": "cpu: test",
        "threads": 1,
        "metrics": {
            "results": {"1nfe": scores(fid1), **({"2nfe": scores(fid2)} if fid2 is not None else {})},
            "digits": {"1nfe": digits(fid1)},
        },
        "curves": curves,
    }


def test_report_tables_mean_std_and_seed_marks(tmp_path):
    runs = [record("ilct", 0, 60.0, 70.0), record("ilct", 1, 62.0, 72.0), record("ilct", 2, 64.0, 74.0)]
    runs += [record("slct", 0, 90.0, 95.0), record("cauchy", 0, 50.0, 55.0), record("cauchy", 1, 52.0, None)]
    runs += [{**record("ilct_b64", 0, 58.0, None), "config": {"data": {"batch_size": 64}}}]
    report.report(runs, tmp_path)
    text = (tmp_path / "tables.md").read_text()
    assert "| `ilct` | 3 | 100 | 10 | 62.0 ± 2.0 | 72.0 ± 2.0 |" in text
    assert "| `cauchy` | 2 (< 3) | 100 | 10 | 51.0 ± 1.4 | 55.0 (1 of 2 seeds) |" in text  # a score one seed lacks
    # Question 4: 51 - 62 = -11 beyond the larger std (2.0); slct (one seed) has no spread and is left out.
    assert "| `cauchy` | 2 | -11.0 | 2.0 | better | every seed better |" in text
    assert "| `slct` | 1 |" not in text
    assert "| `slct` | 1 (< 3) | 100 | 10 | 90.0 | 95.0 |" in text
    assert "| `ilct_b64` | 1 (< 3) | 100 × 64 | 10 | 58.0 | — |" in text  # the batch, where the record has it
    assert "| 37.15, R 0.12; 16.84 |" in text  # the paper's Table 2(a) / Table 1 beside ours
    # Stage means: N = 11 averages the two rows logged at N = 11 (0.1, 0.3), then over seeds.
    assert "| `ilct` | 11 | 0.01 | 0.2000 | 4.00 | 0.0200 |" in text
    assert "| `ilct` (3) | 12.40 ± 0.40 | 6.20 ± 0.20 |" in text  # in-loop digit FID at steps 50 and 100
    for name in ("fid_vs_step.png", "td_stats.png", "fid_rows.png"):
        assert (tmp_path / name).stat().st_size > 0


def test_long_rows_are_compared_with_ilct_of_their_own_length(tmp_path):
    """A 6,000-step row against the 1,500-step `ilct` would credit training length to the method."""
    runs = [record("ilct", k, f, None) for k, f in enumerate((60.0, 62.0))]
    runs += [record("ilct_6k", k, f, None) for k, f in enumerate((40.0, 42.0))]
    runs += [record("slct_noot_6k", k, f, None) for k, f in enumerate((30.0, 31.0))]
    report.report(runs, tmp_path)
    text = (tmp_path / "tables.md").read_text()
    assert "| `slct_noot_6k` | 2 | -10.5 | 1.4 | better | every seed better |" in text  # 30.5 - 41.0
    assert "| `ilct_6k` | 2 |" not in text  # not a row of either comparison (it is the long one's base)


def test_step_count_variants_are_compared_with_ilct_of_their_own_length(tmp_path):
    """`make run`'s recipe at 2,500 steps against `ilct_2k5`, not the 1,500-step `ilct`; at 2,000 steps (no
    `ilct_2k`) against none."""
    runs = [record("ilct", k, f, None) for k, f in enumerate((60.0, 62.0))]
    runs += [record("ilct_2k5", k, f, None) for k, f in enumerate((48.0, 49.0))]
    runs += [record("slct_noot_beta99_2k5", k, f, None) for k, f in enumerate((38.0, 39.0))]
    runs += [record("slct_noot_beta99_2k", k, f, None) for k, f in enumerate((41.0, 43.0))]
    report.report(runs, tmp_path)
    text = (tmp_path / "tables.md").read_text()
    assert "| `slct_noot_beta99_2k5` | 2 | -10.0 | 0.7 | better | every seed better |" in text  # 38.5 - 48.5
    for row in ("ilct_2k5", "slct_noot_beta99_2k"):
        assert f"| `{row}` | 2 | -" not in text


def test_report_ema_length_table_puts_each_ema_of_a_run_after_its_base_rows_ema(tmp_path):
    def with_ema(rec, warmup, decays, emas=None):
        rec = {**rec, "steps": 1500, "config": {"ema": {"decays": decays, "warmup": warmup}}}
        if emas:
            rec["metrics"] = {**rec["metrics"], "emas": emas}
        return rec

    scores = lambda f: {"results": {"1nfe": {"fid": f}}, "digits": {"1nfe": {"fid": f * 4}}}  # noqa: E731
    runs = [with_ema(record("slct_noot", k, f, None), 10, [0.999]) for k, f in enumerate((46.0, 50.0))]
    runs += [with_ema(record("slct_noot_ema", 0, 40.0, None), 3, [0.999, 0.99], {"0.99": scores(48.0)})]
    report.report(runs, tmp_path)
    text = (tmp_path / "tables.md").read_text()
    assert (
        "the EMAs of `slct_noot_ema` (seeds: 1 (< 3); warm-up w = 3: the decay is min(decay, (1 + k)/(3 + k)))" in text
    )
    # The base row on the same seed only (46, not the mean with seed 1's 50); horizons 1 / (1 - decay at the end).
    assert "| `slct_noot`'s, 0.999, warm-up w = 10 (seeds as here) | 168 | 46.0 | 4.6 |" in text
    assert "| 0.999 | 751 | 40.0 | 4.0 |" in text and "| 0.99 | 100 | 48.0 | 192.0 |" in text
    assert (tmp_path / "ema_length.png").stat().st_size > 0


def test_every_study_row_composes(tmp_path):
    """Each row's overrides compose into a config (a typo in a row would cost a run's time to find)."""
    from train_utils import compose_cfg

    for row in study.ROWS:
        overrides = [o for o in study.overrides(row, 0) if not o.startswith("hydra.")]
        cfg = compose_cfg(tmp_path, overrides, data="mnist")
        assert cfg.seed == 0
        assert cfg.trainer.max_steps == study.row_steps(row)
        assert cfg.optimizer.lr == (2e-3 if row.endswith("_lr2e3") else 1e-3)  # scale=cpu's lr unless the row's own
        assert cfg.ema.warmup == (3 if row.endswith("_ema") else 10)
        assert cfg.lr_schedule.cooldown == (0.2 if row.endswith("_cool") else 0.0)


@pytest.mark.parametrize("row", ["slct_noot", "ilct_init", "edm_6k"])
def test_study_rows_on_a_gpu_trainer_keep_their_steps(tmp_path, row):
    """`study.py run --trainer gpu_fp32` (a lent GPU): the GPU trainer derives steps from epochs unless pinned,
    so the row's own step count rides along, and the record's overrides say which trainer ran it."""
    from train_utils import compose_cfg

    overrides = study.overrides(row, 1, trainer="gpu_fp32")
    assert overrides[-1].startswith("hydra.run.dir=")
    cfg = compose_cfg(tmp_path, overrides[:-1], data="mnist")
    assert (cfg.trainer.accelerator, cfg.trainer.precision) == ("gpu", "32-true")
    assert cfg.trainer.max_steps == study.row_steps(row) == {"ilct_init": 1000, "edm_6k": 6000}.get(row, 1500)
    assert study.device_info(1)["device"].startswith("cpu: ")


def test_gradient_shares_closed_form():
    """pseudo-Huber pulls every large residual alike (g -> lambda/2); Cauchy's pull fades as 1/sqrt(m)."""
    m = torch.tensor([1e-6, 1.0, 100.0], dtype=torch.float64)
    lam = torch.ones(3, dtype=torch.float64)
    g = diagnose.grad_magnitudes(m, lam, c=1e-3)
    assert g["pseudo_huber"][1:].tolist() == pytest.approx([0.5, 0.5], rel=1e-5)
    assert g["cauchy"][1:].tolist() == pytest.approx([1.0, 0.1], rel=1e-5)
    s = diagnose.shares(g["cauchy"], torch.tensor([False, False, True]), torch.tensor([False, True, True]))
    assert s["outliers"] == pytest.approx(0.1 / float(g["cauchy"].sum()))


def test_report_coupling_strength_table(tmp_path):
    rows = [{"data": "isotropic, D = 256", "exact": 0.122, "block 4": 0.042}]
    (tmp_path / "coupling.json").write_text(json.dumps({"batch": 128, "trials": 2, "rows": rows}))
    report.report([record("ilct", 0, 60.0, 70.0)], tmp_path)
    assert "| isotropic, D = 256 | 0.122 | 0.042 |" in (tmp_path / "tables.md").read_text()


def test_report_training_length_table(tmp_path):
    """Question 3: a long row's in-loop curve sits beside its 1,500-step row's, step by step, in its own table
    and plot; the short rows' table keeps only the short rows."""
    runs = [record("ilct", 0, 60.0, None), record("ilct", 1, 64.0, None)]
    long = record("ilct_6k", 0, 40.0, None)
    long["steps"] = 200
    long["curves"]["digits/fid_1nfe"] = [[50, 9.0], [100, 7.0], [150, 5.0], [200, 3.0]]
    report.report([*runs, long], tmp_path)
    text = (tmp_path / "tables.md").read_text()
    assert study.base_row("ilct_6k") == "ilct" and study.base_row("ilct") is None
    assert "| step | `ilct_6k` (1 (< 3)) | `ilct` (2 (< 3)) |" in text
    assert "| 100 | 7.0 | 6.2 ± 0.3 |" in text  # 60/10 and 64/10
    assert "| 200 | 3.0 |  |" in text  # the short row stops at its own budget
    assert "| **Inception FID, end** | 40.0 | 62.0 ± 2.8 |" in text  # 1 NFE
    short = text.split("## In-loop digit FID")[1].split("## Training length")[0]
    assert "`ilct_6k`" not in short
    assert (tmp_path / "fid_vs_step_long.png").stat().st_size > 0


def test_report_names_the_machine_of_each_run_when_they_differ(tmp_path):
    gpu = record("ilct", 1, 58.0, None)
    gpu["device"] = "gpu: H200 (gpu_fp32)"
    report.report([record("ilct", 0, 60.0, None), gpu], tmp_path)
    text = (tmp_path / "tables.md").read_text()
    assert "Machines: cpu: test (ilct seed0); gpu: H200 (gpu_fp32) (ilct seed1)." in text
    report.report([record("ilct", 0, 60.0, None)], tmp_path)
    assert "Machines: cpu: test. " in (tmp_path / "tables.md").read_text()


def test_report_sigma_mid_tables(tmp_path):
    """sigma_mid.json: mean digit FID per index over seeds, the best index, and a run scored at a chosen index on
    the evaluation noise beside its own 1-NFE and default 2-NFE Inception FID from results.json."""

    def entry(seed, fids, scored=None):
        curve = [{"index": i, "sigma_mid": s, "fid": f} for i, s, f in zip((300, 380, 430), (3.3, 1.03, 0.44), fids)]
        e = {"row": "ilct", "seed": seed, "1nfe": {"fid": 20.0 + seed}, "curve": curve}
        if scored is not None:
            e["scored"] = {"index": 380, "sigma_mid": 1.03, "fid": scored, "digit_fid": 15.0, "digit_legible": 0.8}
        return e

    sweep = {"noise_seed": 50_000, "num_samples": 1000, "runs": [entry(0, [18, 14, 19], 50.0), entry(2, [20, 16, 17])]}
    (tmp_path / "sigma_mid.json").write_text(json.dumps(sweep))
    report.report([record("ilct", 0, 60.0, 62.0), record("ilct", 2, 64.0, 66.0)], tmp_path)
    text = (tmp_path / "tables.md").read_text()
    assert "| 300 (σ 3.3) | 380 (σ 1.03) | 430 (σ 0.44) | best index |" in text
    assert "| `ilct` | 2 (< 3) | 21.0 ± 1.4 | 19.0 | 15.0 | 18.0 | 380 |" in text
    # only seed 0 was scored there: its own 1-NFE (60) and default 2-NFE (62) scores sit beside its 50
    assert "| `ilct` | 1 (< 3) | 380 (σ 1.03) | 50.0 | 62.0 | 60.0 | 15.0 | 6.0 | 0.800 |" in text
    assert (tmp_path / "sigma_mid.png").stat().st_size > 0


def test_sigma_mid_sweep_reads_the_evaluations_it_asked_for(tmp_path, monkeypatch):
    """study.sigma_mid_sweep: the digit search on development noise and the chosen index on evaluation noise,
    read from lct.evaluate's metrics.json files (present here, so nothing is launched)."""
    monkeypatch.setattr(study, "RUNS_DIR", tmp_path)
    monkeypatch.setattr(study, "launch", lambda *a: pytest.fail("a finished evaluation was launched again"))
    monkeypatch.setattr(study, "reference_images", lambda: tmp_path / "ref.npy")
    run = tmp_path / "slct_noot" / "seed1"
    curve = [{"index": i, "sigma_mid": 1.0, "fid": 10.0 + i, "legible": 0.7, "coverage": 0.9} for i in (380, 430)]
    digits = {"1nfe": {"fid": 30.0, "legible": 0.6, "coverage": 0.95}}
    for name, body in {
        "sigma_mid": {"digits": digits, "search": {"curve": curve}},
        "eval_2nfe_mid380": {
            "results": {"2nfe": {"fid": 41.0, "precision": 0.3, "recall": 0.5, "sigmas": [80.0, 1.03]}},
            "digits": {"2nfe": {"fid": 120.0, "legible": 0.8, "coverage": 0.99}},
        },
    }.items():
        (run / name).mkdir(parents=True)
        (run / name / "metrics.json").write_text(json.dumps(body))
    entry = study.sigma_mid_sweep("slct_noot", 1, 1, score_index=380)
    assert entry["1nfe"]["fid"] == 30.0 and [c["fid"] for c in entry["curve"]] == [390.0, 440.0]
    assert entry["scored"] == {
        "index": 380,
        "sigma_mid": 1.03,
        "noise_seed": study.EVAL_SEED,
        "fid": 41.0,
        "precision": 0.3,
        "recall": 0.5,
        "digit_fid": 120.0,
        "digit_legible": 0.8,
        "digit_coverage": 0.99,
    }
    assert study.DEV_SEED >= study.EVAL_SEED + study.NUM_EVAL  # the sweep's noise never overlaps the evaluation's


def test_report_follows_edm_rows_at_their_multi_step_nfe(tmp_path):
    """An EDM row's in-loop curve (tables and question 3) is its Heun 35-NFE digit FID, not one Euler step."""
    runs = [record("ilct", 0, 60.0, None)]
    for row in ("edm", "edm_6k"):
        edm = record(row, 0, 120.0, None)
        edm["curves"]["digits/fid_35nfe"] = [[50, 30.0], [100, 20.0]]
        runs.append(edm)
    report.report(runs, tmp_path)
    text = (tmp_path / "tables.md").read_text()
    assert "| `edm`, 35 NFE (1 (< 3)) | 30.00 | 20.00 |" in text  # the 1-NFE curve (24, 12) is not shown
    assert "| step | `edm_6k`, 35 NFE (1 (< 3)) | `edm`, 35 NFE (1 (< 3)) |" in text
    assert "| 100 | 20.0 | 20.0 |" in text
    # The end of question 3's table: each column's final Inception FID at that NFE (record(): only 1 NFE here).
    assert "| **Inception FID, end** | — | — |" in text


def fake_device_run(root: Path, row: str, seed: int, step: int, compiled: bool) -> None:
    """A run dir as `study.py train` leaves it on a device: checkpoint, DEVICE_RECORD, metrics.csv, config."""
    run = root / row / f"seed{seed}"
    (run / "checkpoints").mkdir(parents=True)
    (run / "csv" / "version_0").mkdir(parents=True)
    ckpt = {"global_step": step, "state_dict": {"w": torch.full((3,), float(step))}, "optimizer_states": [{"m": 1}]}
    torch.save(ckpt, run / "checkpoints" / "last.ckpt")
    extra = ["trainer.compile=true"] if compiled else []
    info = {"device": "gpu: test", "threads": 1, "overrides": [f"seed={seed}", *extra], "train_wall_s": 10.0}
    (run / study.DEVICE_RECORD).write_text(json.dumps(info))
    (run / "config_resolved.yaml").write_text("seed: 0\n")
    (run / "csv" / "version_0" / "metrics.csv").write_text(f"step,epoch,digits/fid_1nfe\n{step},0,{step / 10}\n")


def test_device_runs_travel_back_for_scoring(tmp_path, monkeypatch):
    """`train` on a device, `pack` there, `unpack` and `collect` here: the run that got further travels (without
    its optimizer state), lands as last.ckpt under the runs dir with its DEVICE_RECORD, and every run's curve is
    collected once per variant."""
    from argparse import Namespace

    compiled, eager = tmp_path / "dev" / "study", tmp_path / "dev" / "study_eager"
    fake_device_run(compiled, "slct_noot_20k", 0, 300, compiled=True)
    fake_device_run(eager, "slct_noot_20k", 0, 500, compiled=False)
    fake_device_run(compiled, "ilct_20k", 1, 200, compiled=True)  # not packed: curves only
    out = tmp_path / "out"
    args = Namespace(out=str(out), ckpts=["slct_noot_20k_seed0"], runs_dirs=[str(compiled), str(eager)], rows=[])
    study.cmd_pack(args)
    pack = json.loads((out / "pack.json").read_text())["checkpoints"]
    assert pack == {"slct_noot_20k_seed0": {"runs_dir": "study_eager", "from": "last.ckpt", "global_step": 500}}
    assert sorted(p.name for p in out.iterdir()) == ["pack.json", "runs.tar.gz", "slct_noot_20k_seed0.ckpt.gz"]

    here = tmp_path / "here" / "study"
    monkeypatch.setattr(study, "RUNS_DIR", here)
    study.cmd_unpack(Namespace(dir=str(out)))
    ckpt = torch.load(here / "slct_noot_20k" / "seed0" / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 500 and "optimizer_states" not in ckpt
    assert torch.equal(ckpt["state_dict"]["w"], torch.full((3,), 500.0))
    moved = json.loads((here / "slct_noot_20k" / "seed0" / study.DEVICE_RECORD).read_text())
    assert "trainer.compile=true" not in moved["overrides"]  # the eager run's record came with its checkpoint

    dest = tmp_path / "partial.json"
    rows = ["slct_noot_20k", "ilct_20k"]
    study.cmd_collect(Namespace(runs_dirs=[str(tmp_path / "here" / "study_eager"), str(here)], rows=rows, out=dest))
    runs = [(r["row"], r["seed"], r["variant"], r["steps"]) for r in json.loads(dest.read_text())["runs"]]
    assert runs == [
        ("ilct_20k", 1, "compiled", 200),
        ("slct_noot_20k", 0, "compiled", 300),
        ("slct_noot_20k", 0, "eager", 500),
    ]

    # `run` refuses to make a row record of a stopped run (its last.ckpt counts as trained) ...
    with pytest.raises(RuntimeError, match="stopped at step 500 of 20000: `study.py score` scores it"):
        study.run_one("slct_noot_20k", 0, 1, [1], print)
    # ... `score` evaluates it where it stopped (no training); `collect` and the report carry it
    fake = {"results": {"1nfe": {"fid": 41.5}, "2nfe": {"fid": 38.25}}, "digits": {}, "digits_online": {}}
    monkeypatch.setattr(study, "evaluate", lambda row, seed, threads, nfe: fake)
    study.cmd_score(Namespace(rows=["slct_noot_20k"], seeds=[0], workers=1, threads=1, inception_nfe=[1, 2]))
    study.cmd_collect(Namespace(runs_dirs=[str(here)], rows=rows, out=dest))
    collected = {(r["row"], r["seed"]): r for r in json.loads(dest.read_text())["runs"]}
    assert collected[("slct_noot_20k", 0)]["score"] == {"step": 500, "eval_wall_s": 0.0, "metrics": fake}
    assert "score" not in collected[("ilct_20k", 1)]
    lines, _ = report.partial_section(list(collected.values()), tmp_path, "gpu.png")
    assert any(line.startswith("| `slct_noot_20k` seed 0 |") and line.endswith("| 41.5 / 38.2 |") for line in lines)
    assert any(line.startswith("| `ilct_20k` seed 1 |") and line.endswith("| — |") for line in lines)


def test_train_records_where_and_how_a_run_trained(tmp_path, monkeypatch):
    """`study.py train --extra ... --max-time ...`: the overrides reach lct.train before the run dir, and the
    DEVICE_RECORD keeps them (the record `run` writes later says where the run trained, not where it was scored)."""
    launched = []
    monkeypatch.setattr(study, "RUNS_DIR", tmp_path)
    monkeypatch.setattr(study, "launch", lambda cmd, threads, log: launched.append(cmd))
    study.train("slct_noot_20k", 1, 2, print, "gpu_fp32", ["trainer.compile=true"], "00:00:07:30")
    (cmd,) = launched
    assert cmd[-1].startswith("hydra.run.dir=")
    assert cmd[-3:-1] == ["trainer.compile=true", '+trainer.max_time="00:00:07:30"']
    info = json.loads((tmp_path / "slct_noot_20k" / "seed1" / study.DEVICE_RECORD).read_text())
    assert info["overrides"] == cmd[1:-1] and info["threads"] == 2
    assert "trainer=gpu_fp32" in info["overrides"] and "trainer.max_steps=20000" in info["overrides"]


def test_report_pairs_each_variant_with_its_own_row_seed_by_seed(tmp_path):
    """A one-setting variant (here Adam's beta2) is judged against the same seed of the row it changes."""
    runs = [record("slct_noot", k, f, None) for k, f in enumerate((48.0, 46.0, 43.0))]
    runs += [record("slct_noot_beta99", k, f, None) for k, f in enumerate((44.0, 45.0))]
    runs += [record("ilct", 0, 57.0, None), record("ilct_beta99", 1, 54.0, None)]  # no common seed: no row
    report.report(runs, tmp_path)
    text = (tmp_path / "tables.md").read_text()
    assert "## Question 4's variants against their own row" in text
    assert "| `slct_noot_beta99` | `slct_noot` | 0: 44.0 vs 48.0 (-4.0), 1: 45.0 vs 46.0 (-1.0) | -2.5 | 2.5 |" in text
    assert "| `ilct_beta99` |" not in text.split("## Question 4's variants")[1].split("##")[0]
    assert study.variant_base("slct_noot_beta99") == "slct_noot" and study.variant_base("slct_noot") is None
    # at a long row's length the variant pairs with the long row (same steps, same stretched curriculum)
    assert study.variant_base("slct_noot_beta99_6k") == "slct_noot_6k" and study.variant_base("slct_noot_6k") is None
    assert study.variant_base("cauchy_ot_beta99") == "cauchy_ot"
    # a variant of the main job (itself a variant) pairs with the main job, and its override reaches the curriculum
    assert study.variant_base("slct_noot_beta99_s0_20") == "slct_noot_beta99"
    assert "method.curriculum.s0=20" in study.overrides("slct_noot_beta99_s0_20", 0)


def test_train_wall_time_is_the_checkpoints_summed_clock_else_the_last_attempts(tmp_path, monkeypatch):
    import os

    monkeypatch.setattr(study, "RUNS_DIR", tmp_path)
    run = study.run_dir("ilct", 0)
    (run / "checkpoints").mkdir(parents=True)
    for name, mtime in (("config_resolved.yaml", 1000.0), ("checkpoints/last.ckpt", 1600.0)):
        (run / name).write_text("x")
        os.utime(run / name, (mtime, mtime))
    summed = {"lct": {"train_seconds": 5000.0, "timed_from_step": 0}}  # resumed across sessions: the sum
    assert study.train_wall_time("ilct", 0, summed) == 5000.0
    for older in ({"lct": {}}, {"lct": {"train_seconds": 5000.0, "timed_from_step": 250}}):
        assert study.train_wall_time("ilct", 0, older) == 600.0  # config (rewritten per attempt) to last.ckpt


def test_report_20k_runs_of_every_machine_side_by_side(tmp_path):
    """Question 3 at 20,000 steps: a finished `*_20k` run (results.json) sits beside the runs of the same schedule
    stopped early on a GPU (gpu_20k*.json; per row and machine the furthest) or on the CPU (cpu_20k*.json),
    every 1,000 steps, with each one's Inception FID; the 6,000-step table keeps only the 6,000-step rows."""
    runs = [record("ilct", 0, 60.0, None), record("ilct_6k", 0, 40.0, None)]
    cpu = record("slct_20k", 0, 30.0, None)
    cpu["steps"] = 3000
    cpu["curves"]["digits/fid_1nfe"] = [[500, 900.0], [1000, 800.0], [2000, 400.0], [3000, 200.0]]
    runs.append(cpu)

    def stopped(row, steps, pts, fid=None, device="gpu: H200 (gpu_fp32)"):
        r = {"row": row, "seed": 0, "variant": "compiled", "steps": steps, "device": device}
        r["curves"] = {"digits/fid_1nfe": pts}
        if fid is not None:
            r["score"] = {"step": steps, "metrics": {"results": {"1nfe": {"fid": fid}}}}
        return {**r, "row_steps": 20000, "train_wall_s": 100.0, "threads": 1, "host": "h", "overrides": []}

    early = stopped("slct_20k", 1000, [[500, 950.0], [1000, 850.0]])
    further = stopped("slct_20k", 2000, [[500, 940.0], [1000, 820.0], [2000, 380.0]], fid=35.5)
    ilct_gpu = stopped("ilct_20k", 1000, [[1000, 700.0]], fid=50.0)
    ilct_cpu = stopped("ilct_20k", 2000, [[1000, 690.0], [2000, 600.0]], fid=45.0, device="cpu: test")
    shorter = {**stopped("slct_20k", 500, [[500, 990.0]]), "seed": 1}  # per row and machine the furthest only
    resumed = stopped("slct_20k", 2500, [[1000, 800.0]], fid=31.0, device="cpu: test")  # then finished: results.json
    (tmp_path / "gpu_20k.json").write_text(json.dumps({"runs": [early, ilct_gpu, shorter]}))
    (tmp_path / "gpu_20k_call2.json").write_text(json.dumps({"runs": [further]}))
    (tmp_path / "cpu_20k.json").write_text(json.dumps({"runs": [ilct_cpu, resumed]}))
    report.report(runs, tmp_path)
    text = (tmp_path / "tables.md").read_text()
    twenty = text.split("## Question 3 at 20,000 steps")[1].split("\n## ")[0]
    header = (
        "| step | `ilct_20k` seed 0, cpu: test, stopped at 2,000 | `ilct_20k` seed 0, gpu: H200 (gpu_fp32), "
        "stopped at 1,000 | `slct_20k` seed 0, cpu: test, 3,000 steps | `slct_20k` seed 0, gpu: H200 (gpu_fp32), "
        "stopped at 2,000 |"
    )
    assert header in twenty
    assert "| 1,000 | 690 | 700 | 800 | 820 |" in twenty and "| 3,000 |  |  | 200 |  |" in twenty
    assert "| 500 |" not in twenty  # every 1,000 steps
    assert "| **Inception FID** | 45.0 at step 2,000 | 50.0 at step 1,000 | 30.0 | 35.5 at step 2,000 |" in twenty
    assert "## Question 3 on the CPU, stopped early (cpu_20k.json" in text
    assert "## Question 3 on a GPU, stopped early (gpu_20k_call2.json" in text
    length = text.split("## Training length")[1].split("\n## ")[0]
    assert "`slct_20k`" not in length and "`ilct_6k`" in length
    for plot in ("fid_vs_step_20k.png", "fid_vs_step_gpu.png", "fid_vs_step_gpu_call2.png", "fid_vs_step_cpu_20k.png"):
        assert (tmp_path / plot).stat().st_size > 0


def test_collect_records_the_checkpoints_summed_clock_over_every_train_call(tmp_path):
    """A run stopped by --max-time and resumed by a later `train` call: DEVICE_RECORD holds the last call's wall
    time only, the checkpoint's clock the sum over every attempt (when it covers the whole run)."""
    from argparse import Namespace

    for seed, clock in ((0, {"train_seconds": 5000.0, "timed_from_step": 0}), (1, {})):
        fake_device_run(tmp_path, "ilct_20k", seed, 300, compiled=False)
        last = tmp_path / "ilct_20k" / f"seed{seed}" / "checkpoints" / "last.ckpt"
        torch.save({**torch.load(last, weights_only=True), "lct": clock}, last)
    dest = tmp_path / "cpu_20k.json"
    study.cmd_collect(Namespace(runs_dirs=[str(tmp_path)], rows=["ilct_20k"], out=dest))
    walls = {r["seed"]: r["train_wall_s"] for r in json.loads(dest.read_text())["runs"]}
    assert walls == {0: 5000.0, 1: 10.0}  # seed 1's checkpoint has no clock: the DEVICE_RECORD's


def test_dead_blocks_counts_weights_decayed_to_zero_per_block():
    """A block is dead where weight decay took its weights below 1e-30 (denormals included); the norms' largest
    scale and the q/k-only attention deaths reach the table."""
    state = {
        "backbone.enc.8.norm0.weight": torch.full((4,), 1e-33),  # a GroupNorm scale decayed into the denormals
        "backbone.enc.8.conv0.weight": torch.tensor([0.0, 1e-39, 1e-31, 0.5]),  # 3 of 4 dead
        "backbone.dec.0.norm0.weight": torch.ones(4),
        "backbone.dec.0.attn.qkv.weight": torch.cat([torch.zeros(8), torch.ones(4)]),  # q and k dead, v alive
        "backbone.dec.0.attn.qkv.bias": torch.ones(4),
        "map0.weight": torch.ones(2),
        "step_count": torch.tensor([3]),  # not floating point: not counted
    }
    blocks = dead_blocks.dead_blocks(state)
    assert set(blocks) == {"enc.8", "dec.0", "map0"}
    assert blocks["enc.8"] == {"params": 8, "dead_share": 0.875, "max_norm_scale": pytest.approx(1e-33)}
    assert blocks["dec.0"]["dead_share"] == pytest.approx(8 / 20, abs=1e-4) and blocks["dec.0"]["max_norm_scale"] == 1.0
    assert blocks["map0"] == {"params": 2, "dead_share": 0.0, "max_norm_scale": None}
    row = {"experiment": "ilct", "schedule_steps": 20000, "norm": "groupnorm", "seed": 0, "step": 3500}
    row |= {"dead_share": 0.17, "blocks": blocks, "dead_tensors": {"backbone.dec.0.attn.qkv.weight": 0.667}}
    table = dead_blocks.markdown({"a.ckpt": row})
    assert table[2] == "| `ilct` seed 0, 20,000-step schedule (groupnorm) | 3,500 | 17.0% | `enc.8` | 1 | 1 |"
    table = dead_blocks.markdown({"a.ckpt": row, "b.ckpt": row | {"weight_decay": 0.0, "step": 1000}})
    assert table[3].startswith("| `ilct` seed 0, 20,000-step schedule (groupnorm, no weight decay) | 1,000 |")


def test_dead_blocks_out_keeps_the_checkpoints_counted_before(tmp_path):
    out = tmp_path / "dead.json"
    out.write_text(json.dumps({"old.ckpt": {"step": 1}, "again.ckpt": {"step": 2}}))
    assert dead_blocks.merged(out, {"again.ckpt": {"step": 3}, "new.ckpt": {"step": 4}}) == {
        "old.ckpt": {"step": 1},
        "again.ckpt": {"step": 3},
        "new.ckpt": {"step": 4},
    }
    assert dead_blocks.merged(tmp_path / "none.json", {"a": {}}) == {"a": {}}


def test_rerun_is_judged_against_the_rows_published_spread(tmp_path, monkeypatch):
    """`study.py rerun`'s verdicts: inside the row's published mean +- 2 std over its seeds, and +- 2 std pooled
    over every row of the same length."""
    published = {("ilct", k): record("ilct", k, f, None) for k, f in enumerate((57.0, 58.0, 59.0))}  # 58 +- 1
    published.update({("cauchy", k): record("cauchy", k, f, None) for k, f in enumerate((50.0, 54.0))})
    published[("slct_noot_20k", 0)] = {**record("slct_noot_20k", 0, 30.5, None), "steps": 20000}
    near = study.rerun_comparison("ilct", 0, 59.9, "cpu: other", published)
    assert (near["published_fid"], near["row_mean"], near["row_std"]) == (57.0, 58.0, 1.0)
    assert near["within_row"] and near["within_pooled"]
    # pooled over ilct and cauchy: var (2 * 1 + 1 * 8) / 3, std 1.83
    far = study.rerun_comparison("ilct", 0, 61.6, "cpu: other", published)
    assert far["pooled_std"] == pytest.approx(1.83, abs=0.01) and not far["within_row"] and far["within_pooled"]
    assert not study.rerun_comparison("ilct", 0, 61.7, "cpu: other", published)["within_pooled"]
    one_seed = study.rerun_comparison("slct_noot_20k", 0, 32.4, "cpu: other", published)  # none of its length
    assert one_seed["within_row"] is None and one_seed["pooled_std"] is None and one_seed["within_pooled"]
    assert not study.rerun_comparison("slct_noot_20k", 0, 32.6, "cpu: other", published)["within_pooled"]
    table = "\n".join(report.rerun_table([{**far, "rerun_train_wall_s": 540.0, "rerun_threads": 1}]))
    assert "| `ilct` seed 0 | 61.6 | 57.0 | +4.6 | 58.0 ± 1.0 (3) | outside | 1.8 | within | 9 min, 1 thread" in table
    # an EDM row is published by its Heun 35-NFE FID, not the 1-NFE one
    edm = record("edm", 0, 130.0, None)
    edm["metrics"]["results"][f"{study.EDM_CURVE_NFE}nfe"] = {"fid": 40.0}
    assert study.headline_fid("edm", edm["metrics"]) == 40.0
    # a run without a published record is refused before anything trains
    monkeypatch.setattr(study, "RECORDS", tmp_path)
    args = type("A", (), {"rows": ["ilct"], "seeds": [5], "workers": 1, "threads": 1, "out": str(tmp_path / "x")})
    monkeypatch.setattr(study, "train", lambda *a, **k: pytest.fail("trained a run with no published record"))
    with pytest.raises(SystemExit, match="no published record"):
        study.cmd_rerun(args)


def test_merge_from_a_runs_worker_threads_at_once(tmp_path, monkeypatch):
    """`run`'s workers are threads of one process: merging at once must neither fail nor lose a record."""
    from concurrent.futures import ThreadPoolExecutor

    records, results = tmp_path / "runs", tmp_path / "results.json"
    records.mkdir()
    monkeypatch.setattr(study, "RECORDS", records)
    monkeypatch.setattr(study, "RESULTS", results)
    for seed in range(8):
        (records / f"ilct_seed{seed}.json").write_text(json.dumps({"row": "ilct", "seed": seed}))
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: study.merge(), range(64)))
    assert [r["seed"] for r in json.loads(results.read_text())["runs"]] == list(range(8))
    assert not list(tmp_path.glob(".*.tmp"))
