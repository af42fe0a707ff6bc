"""Issue 9's probes: bad input is a one-line error, user files are never deleted, reruns resume from the
newest readable checkpoint and refuse a silently different config, and runs leave no litter."""

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from PIL import Image

from lct.data.encoding import finalize_stats, write_array_root
from lct.data.shards import LatentShards
from lct.errors import LctError
from lct.io.ckpt_file import read_checkpoint_file

CONF = str(Path(__file__).resolve().parents[1] / "conf")
SRC = str(Path(__file__).resolve().parents[1] / "src")
TINY = [
    "data=synthetic",
    "data.batch_size=8",
    "trainer.enable_progress_bar=false",  # the default callbacks.progress is dropped then (lct.train.run)
    "callbacks.sample_grid=null",
]


def _cfg(tmp_path, *overrides, logger="none"):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose(
            "config",
            overrides=[
                *TINY,
                f"logger={logger}",
                f"paths.root_dir={tmp_path}",
                f"paths.output_dir={tmp_path}/run",
                *overrides,
            ],
        )


def _train(tmp_path, *overrides, logger="none"):
    from lct.train.run import train

    return train(_cfg(tmp_path, *overrides, logger=logger))


def _cli(*args, debug=False, timeout=180):
    """Run `python -m <args>` as a user would (no HYDRA_FULL_ERROR, which shows tracebacks)."""
    env = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "LCT_DEBUG")}
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    argv = [sys.executable, "-m", *args] + (["--debug"] if debug else [])
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)


def _latent_root(root, n=16, nan_at=None):
    rng = np.random.default_rng(0)
    chunks = [rng.standard_normal((n // 2, 4, 8, 8)).astype(np.float32) for _ in range(2)]
    if nan_at is not None:
        chunks[1][nan_at] = np.nan
    return write_array_root(root, chunks)


# --- 7: one-line errors, exit code 2, config validated before any work ---------------------------------


@pytest.mark.parametrize(
    "override, key",
    [
        ("data.batch_size=0", "data.batch_size"),
        ("data.batch_size=-3", "data.batch_size"),
        ("trainer.max_steps=abc", "trainer.max_steps"),
        ("method.diffusion.weight=-1", "method.diffusion.weight"),
        ("method.diffusion.ratio=1.5", "method.diffusion.ratio"),
        ("resume_changes=maybe", "resume_changes"),
        ("ema.warmup=1", "ema.warmup"),
        ("ema.decays=[1.0]", "ema.decays"),
        ("optimizer.lr=0", "optimizer.lr"),
        ("optimizer.lr=.inf", "optimizer.lr"),
        ("optimizer.weight_decay=-1e-4", "optimizer.weight_decay"),
        ("trainer.precision=bf15-mixed", "trainer.precision"),
        ("callbacks.checkpoint.every_n_train_steps=-1", "callbacks.checkpoint.every_n_train_steps"),
        ("trainer.max_steps=-5", "trainer.max_steps"),
        ("trainer.devices=3", "data.batch_size=8"),  # the global batch of 8 does not split over 3 processes
        ("+data.skip_nonfinite=maybe", "data.skip_nonfinite"),
    ],
)
def test_bad_config_values_are_refused_before_any_work(tmp_path, override, key):
    with pytest.raises(LctError, match=key):
        _train(tmp_path, override)
    assert not (tmp_path / "run").exists()  # nothing was written


def test_train_cli_prints_one_line_and_exits_2(tmp_path):
    out = _cli("lct.train", *TINY, "trainer.max_steps=abc", f"hydra.run.dir={tmp_path}/run")
    assert out.returncode == 2, out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    lines = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "trainer.max_steps='abc'" in lines[0]
    debug = _cli("lct.train", *TINY, "data.batch_size=0", f"hydra.run.dir={tmp_path}/run", debug=True)
    assert "Traceback" in debug.stderr and "data.batch_size" in debug.stderr


def test_encode_cli_missing_or_empty_source_is_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    for source in (tmp_path / "missing", tmp_path / "empty"):
        out = _cli(
            "lct.encode",
            "--source",
            str(source),
            "--vae",
            "builtin:mnist",
            "--size",
            "32",
            "--out",
            str(tmp_path / "lat"),
        )
        assert out.returncode == 2 and "Traceback" not in out.stderr
        assert out.stderr.strip().splitlines()[-1].startswith("error: ") and str(source) in out.stderr


def test_truncated_shard_names_the_file(tmp_path):
    _latent_root(tmp_path / "lat")
    shard = tmp_path / "lat" / "shards" / "000001.npy"
    shard.write_bytes(shard.read_bytes()[:200])
    with pytest.raises(LctError, match="000001.npy"):
        LatentShards(tmp_path / "lat")


def test_disk_full_while_checkpointing_is_a_clear_error(tmp_path, monkeypatch):
    from lct.train.callbacks import AtomicCheckpointIO

    path = tmp_path / "ckpts" / "last.ckpt"
    for err in (
        RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 2048 vs 1966"),
        OSError(28, "No space left on device"),
    ):

        def full(obj, f, *a, _err=err, **k):
            Path(f).write_bytes(b"partial")
            raise _err

        monkeypatch.setattr(torch, "save", full)
        with pytest.raises(LctError, match="GiB free") as info:
            AtomicCheckpointIO().save_checkpoint({"a": 1}, path)
        assert str(path) in str(info.value) and not list(path.parent.iterdir())


# --- 1 (helper for A) and 3: checkpoint files read safely ----------------------------------------------


def test_read_checkpoint_file_refuses_truncated_foreign_and_unsafe_files(tmp_path):
    good = tmp_path / "good.ckpt"
    torch.save({"global_step": 3, "w": torch.ones(2)}, good)
    assert read_checkpoint_file(good)["global_step"] == 3
    (tmp_path / "cut.ckpt").write_bytes(good.read_bytes()[:100])
    (tmp_path / "text.ckpt").write_text("not a checkpoint")
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    torch.save({"x": Evil()}, tmp_path / "evil.ckpt")
    for name, words in (
        ("cut", "truncated"),
        ("text", "not a checkpoint"),
        ("evil", "could run code"),
        ("missing", "no checkpoint"),
    ):
        with pytest.raises(LctError, match=words):
            read_checkpoint_file(tmp_path / f"{name}.ckpt")
    assert not marker.exists()


def test_auto_resume_takes_the_newest_readable_checkpoint(tmp_path, caplog):
    common = ["trainer.max_steps=6", "callbacks.checkpoint.every_n_train_steps=2", "callbacks.checkpoint.save_top_k=-1"]
    _train(tmp_path, *common, "trainer.max_steps=4")
    ckpts = tmp_path / "run" / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["epoch=0-step=2.ckpt", "epoch=0-step=4.ckpt", "last.ckpt"]
    # A crash while writing last.ckpt (no atomic rename) and a cut-off step-4 checkpoint: step 2 is the newest
    # readable one. A stale temporary file of a killed writer goes; a look-alike the user made stays.
    for name in ("last.ckpt", "epoch=0-step=4.ckpt"):
        (ckpts / name).write_bytes((ckpts / name).read_bytes()[:1000])
    (ckpts / ".last.ckpt.tmp-999999999").write_bytes(b"half a checkpoint")
    (ckpts / ".other.tmp").write_text("mine")
    caplog.set_level(logging.INFO)
    _train(tmp_path, *common, "trainer.max_steps=4", "ckpt_path=auto")
    assert "resuming from" in caplog.text and "epoch=0-step=2.ckpt" in caplog.text
    assert "not resuming from" in caplog.text and "last.ckpt" in caplog.text
    assert not (ckpts / ".last.ckpt.tmp-999999999").exists() and (ckpts / ".other.tmp").is_file()
    last = read_checkpoint_file(ckpts / "last.ckpt")  # rewritten by the resumed run at step 4
    assert last["global_step"] == 4
    from lct.train.resume import resolve_ckpt

    assert Path(resolve_ckpt(_cfg(tmp_path, *common, "trainer.max_steps=4"))).name == "last.ckpt"  # step-4 tie
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(last_bytes := (ckpts / "last.ckpt").read_bytes()[:5000])
    with pytest.raises(LctError, match="cut.ckpt is truncated"):  # an explicit ckpt_path too
        _train(tmp_path / "other", *common, f"ckpt_path={cut}")
    assert cut.read_bytes() == last_bytes


def test_train_seconds_sum_over_resumes_and_mark_older_checkpoints(tmp_path):
    ckpts = tmp_path / "run" / "checkpoints"
    _train(tmp_path, "trainer.max_steps=2")
    first = read_checkpoint_file(ckpts / "last.ckpt")
    assert 0 < first["lct"]["train_seconds"] < 600 and first["lct"]["timed_from_step"] == 0
    first["lct"]["train_seconds"] = 1e6  # as if the first attempt had trained for days: a resume adds to it
    torch.save(first, ckpts / "last.ckpt")
    _train(tmp_path, "trainer.max_steps=4", "resume_changes=allow")
    second = read_checkpoint_file(ckpts / "last.ckpt")
    assert second["global_step"] == 4 and second["lct"]["timed_from_step"] == 0
    assert 1e6 < second["lct"]["train_seconds"] < 1e6 + 600
    # A checkpoint written before the sum was kept: the resumed run times itself from the step it resumed at.
    del second["lct"]["train_seconds"], second["lct"]["timed_from_step"]
    torch.save(second, ckpts / "last.ckpt")
    _train(tmp_path, "trainer.max_steps=5", "resume_changes=allow")
    third = read_checkpoint_file(ckpts / "last.ckpt")["lct"]
    assert third["timed_from_step"] == 4 and 0 < third["train_seconds"] < 600


# --- 4: config drift on resume --------------------------------------------------------------------------


def _logged_lr(run) -> dict[int, float]:
    import csv

    with open(run / "csv" / "version_0" / "metrics.csv") as f:
        return {int(r["step"]): float(r["train/lr"]) for r in csv.DictReader(f) if r.get("train/lr")}


def test_lr_cooldown_follows_its_closed_form_and_survives_a_resume(tmp_path):
    from lct.core import lr_factor

    common = ["trainer.max_steps=10", "lr_schedule=cooldown", "lr_schedule.cooldown=0.5", "log_every=1"]
    ckpt = ["callbacks.checkpoint.every_n_train_steps=4", "callbacks.checkpoint.save_top_k=-1"]
    _train(tmp_path / "a", *common, *ckpt, "optimizer.lr=0.01", logger="csv")
    lr = _logged_lr(tmp_path / "a" / "run")
    assert lr == pytest.approx({k: 0.01 * lr_factor(k, 10, 0.5) for k in range(10)})  # 1 to step 5, then 0.8 ... 0.2
    start = tmp_path / "a" / "run" / "checkpoints" / "epoch=0-step=4.ckpt"
    _train(tmp_path / "b", *common, "optimizer.lr=0.01", f"ckpt_path='{start}'", logger="csv")
    assert _logged_lr(tmp_path / "b" / "run") == pytest.approx({k: lr[k] for k in range(4, 10)})
    with pytest.raises(LctError, match="lr_schedule.cooldown"):
        _train(tmp_path / "c", "lr_schedule.cooldown=2")


def test_resume_with_another_config_is_refused_then_recorded(tmp_path):
    _train(tmp_path, "trainer.max_steps=2")
    stored = (tmp_path / "run" / "config_resolved.yaml").read_text()
    with pytest.raises(
        LctError,
        match=r"method\.metric\._target_: 'lct\.core\.metrics\.Cauchy' -> "
        r"'lct\.core\.metrics\.PseudoHuber'.*resume_changes=allow",
    ):
        _train(tmp_path, "trainer.max_steps=2", "experiment=ilct")
    with pytest.raises(LctError, match=r"trainer\.max_steps: 2 -> 3"):
        _train(tmp_path, "trainer.max_steps=3")
    assert (tmp_path / "run" / "config_resolved.yaml").read_text() == stored
    _train(tmp_path, "trainer.max_steps=3", "resume_changes=allow")
    assert (tmp_path / "run" / "config_resolved.1.yaml").read_text() == stored
    assert "max_steps: 3" in (tmp_path / "run" / "config_resolved.yaml").read_text()


def test_config_changes_know_the_keys_added_and_respelled_since_older_runs():
    from lct.train.resume import config_changes

    old = {"ema": {"warmup": True, "decays": [0.999]}, "optimizer": {"lr": 1e-3}}
    new = {"ema": {"warmup": 10, "decays": [0.999]}, "optimizer": {"lr": 1e-3}, "lr_schedule": {"cooldown": 0.0}}
    assert config_changes(old, new) == []  # `true` meant w = 10; no lr_schedule meant the constant lr
    new["lr_schedule"]["cooldown"], new["ema"]["warmup"] = 0.2, 2
    assert config_changes(old, new) == ["ema.warmup: True -> 2", "lr_schedule.cooldown: '<absent>' -> 0.2"]
    assert config_changes({"ema": {"warmup": False}}, {"ema": {"warmup": 10}}) == ["ema.warmup: False -> 10"]
    assert config_changes({"ema": {"warmup": "x"}}, {"ema": {"warmup": "x"}}) == []
    # A run made before trainer.flush_denormal resumes with today's default; turning it off is the user's choice.
    before = {"trainer": {"max_steps": 2}}
    assert config_changes(before, {"trainer": {"max_steps": 2, "flush_denormal": True}}) == []
    now = {"trainer": {"max_steps": 2, "flush_denormal": False}}
    assert config_changes(before, now) == ["trainer.flush_denormal: '<absent>' -> False"]


def test_a_run_made_before_the_lr_schedule_and_warmup_width_resumes_without_allow(tmp_path):
    import yaml

    _train(tmp_path, "trainer.max_steps=2", "ema.warmup=10")
    stored = tmp_path / "run" / "config_resolved.yaml"
    old = yaml.safe_load(stored.read_text())
    old.pop("lr_schedule")
    old["ema"]["warmup"] = True
    stored.write_text(yaml.safe_dump(old))
    _train(tmp_path, "trainer.max_steps=2", "ema.warmup=10")  # the same run: no refusal
    assert yaml.safe_load(stored.read_text())["lr_schedule"] == {"cooldown": 0.0}  # recorded in today's spelling
    with pytest.raises(LctError, match=r"lr_schedule\.cooldown: 0\.0 -> 0\.2"):
        _train(tmp_path, "trainer.max_steps=2", "ema.warmup=10", "lr_schedule=cooldown")


# --- 8: litter -------------------------------------------------------------------------------------------


def test_short_run_leaves_one_last_ckpt_and_resume_appends_to_one_csv(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    _train(tmp_path, "trainer.max_steps=3", "log_every=1", logger="csv")
    run = tmp_path / "run"
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["last.ckpt"]
    assert f"python -m lct.evaluate {run / 'checkpoints' / 'last.ckpt'} --out {run / 'eval'}" in caplog.text
    _train(tmp_path, "trainer.max_steps=5", "log_every=1", "resume_changes=allow", logger="csv")
    assert [p.name for p in (run / "csv").iterdir()] == ["version_0"]
    rows = (run / "csv" / "version_0" / "metrics.csv").read_text().splitlines()
    steps = sorted({int(r.split(",")[rows[0].split(",").index("step")]) for r in rows[1:]})
    assert steps[0] == 0 and steps[-1] == 4 and [p.name for p in (run / "checkpoints").iterdir()] == ["last.ckpt"]


# --- 2: the built-in cache never clears a root it did not make -----------------------------------------


def test_builtin_refuses_a_root_holding_the_users_latents(tmp_path):
    from lct.data.builtin import ensure_builtin

    root = tmp_path / "mine"
    _latent_root(root)
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    with pytest.raises(
        LctError, match=r"holds other latents \(16 from arrays.*not lct.s built-in .*data=folder data.root="
    ):
        ensure_builtin(root, "mnist")
    assert all(p.read_bytes() == b for p, b in before.items())


def test_builtin_rebuilds_only_its_own_marked_cache(tmp_path, monkeypatch):
    from lct.data import builtin
    from lct.data.shards import LatentDataError

    root = tmp_path / "cache"
    _latent_root(root)
    (root / builtin.MARKER).write_text(json.dumps({"builtin": "mnist"}))
    calls = []

    def encode(opts):
        calls.append(sorted(p.name for p in (root / "shards").iterdir()))
        if len(calls) == 1:
            raise LatentDataError("written with other settings")
        return {"count": 0}

    monkeypatch.setattr(builtin, "encode_latents", encode)
    builtin.ensure_builtin(root, "mnist")
    assert calls == [["000000.npy", "000001.npy"], []]  # cleared between the two attempts


# --- 6: silent wrong inputs -----------------------------------------------------------------------------


def test_16bit_png_is_scaled_not_clipped(tmp_path):
    from lct.data.sources import FolderSource

    gray16 = (np.arange(32 * 32).reshape(32, 32) * 64).astype(np.uint16)
    (tmp_path / "img").mkdir()
    Image.fromarray(gray16).save(tmp_path / "img" / "a.png")
    image = FolderSource(tmp_path / "img").load(0)
    assert image.dtype == np.uint8 and image.shape == (32, 32, 1)
    np.testing.assert_allclose(image[..., 0], gray16 / 257, atol=0.5)
    assert (image == 255).mean() < 0.01


def test_nonfinite_latents_are_refused_naming_the_shard(tmp_path):
    with pytest.raises(LctError, match=r"shards/000001\.npy holds non-finite"):
        _latent_root(tmp_path / "direct", nan_at=3)
    _latent_root(tmp_path / "lat")
    shard = tmp_path / "lat" / "shards" / "000001.npy"
    z = np.load(shard)
    z[2, 0, 0, 0] = np.nan
    np.save(shard, z)
    with pytest.raises(LctError, match=r"000001\.npy holds non-finite latents \(NaN/inf; first at row 2\)"):
        finalize_stats(tmp_path / "lat")
    out = _cli("lct.encode", "--stats-only", "--out", str(tmp_path / "lat"))
    assert out.returncode == 2 and "000001.npy" in out.stderr and "Traceback" not in out.stderr


def test_unknown_total_steps_is_one_line_naming_both_keys(tmp_path):
    from train_utils import compose_cfg

    from lct.train.run import build

    cfg = compose_cfg(tmp_path, ["trainer.max_steps=-1"])
    with pytest.raises(LctError, match=r"trainer\.max_steps=<steps> or data\.epochs=<epochs>"):
        build(cfg)
