"""Issue 39 items 8 and 9: bad inputs through the real entry points end in one line naming the key or file,
exit status 2, no traceback; crafted pickles run nothing; `lct.evaluate` finds (or names) the training
latents of a checkpoint that recorded data.root relative."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from train_utils import compose_cfg, fit

from lct.data.encoding import write_array_root
from lct.data.roots import find_data_root
from lct.errors import LctError

SRC = str(Path(__file__).resolve().parents[1] / "src")
TINY = ["data=synthetic", "data.batch_size=8", "trainer.enable_progress_bar=false", "callbacks.sample_grid=null"]


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path, monkeypatch):
    """lct's cache directory (the non-finite scan of user roots) per test, not the user's ~/.cache."""
    monkeypatch.setenv("LCT_CACHE_DIR", str(tmp_path / "cache"))


def _cli(*args, cwd=None):
    """`python -m <args>` as a user runs it (no HYDRA_FULL_ERROR / LCT_DEBUG, which keep tracebacks)."""
    env = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "LCT_DEBUG")}
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=300, env=env, cwd=cwd)


def _one_line(out, *named: str) -> str:
    """The single `error:` line of a refused command, which names every string in `named`."""
    assert out.returncode == 2, out.stderr[-3000:]
    assert "Traceback" not in out.stderr and "HYDRA_FULL_ERROR" not in out.stderr, out.stderr[-3000:]
    errors = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and out.stderr.strip().splitlines()[-1] == errors[0], out.stderr[-3000:]
    assert all(name in errors[0] for name in named), errors[0]
    return errors[0]


@pytest.mark.parametrize(
    "overrides, named",
    [
        (["optimizer.lr=-1"], ["optimizer.lr=-1"]),
        (["optimizer.lr=abc"], ["optimizer.lr='abc'"]),
        (["trainer=ddp_cpu", "data.batch_size=127"], ["data.batch_size=127", "2 processes"]),
        (["trainer.precision=bogus"], ["trainer.precision='bogus'", "bf16-mixed"]),
        (["callbacks.checkpoint.every_n_train_steps=-3"], ["callbacks.checkpoint.every_n_train_steps=-3"]),
        (["trainer.max_steps=0"], ["trainer.max_steps=0"]),
        (["backbone.name=nope"], ["backbone.name='nope'", "unet_tiny"]),
        (["+method.metric.foo=1"], ["method.metric", "foo"]),
        (["method.metric._target_=lct.core.metrics.Nope"], ["method.metric._target_", "Nope"]),
    ],
)
def test_train_bad_input_is_one_line_naming_the_key(tmp_path, overrides, named):
    out = _cli("lct.train", *TINY, *overrides, f"hydra.run.dir={tmp_path}/run")
    _one_line(out, *named)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_lct_debug_keeps_the_traceback(tmp_path):
    env = {**os.environ, "LCT_DEBUG": "1", "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    argv = [sys.executable, "-m", "lct.train", *TINY, "+method.metric.foo=1", f"hydra.run.dir={tmp_path}/run"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode != 0 and "Traceback" in out.stderr and "unexpected keyword argument 'foo'" in out.stderr


@pytest.mark.parametrize(
    "node, key, named",
    [
        (
            {"_target_": "lightning.pytorch.callbacks.ModelCheckpoint", "every_n_train_steps": -3},
            "callbacks.checkpoint",
            "every_n_train_steps",
        ),
        ({"_target_": "lightning.pytorch.Trainer", "precision": "bogus"}, "trainer", "bogus"),
        ({"_target_": "torch.optim.RAdam", "params": [torch.zeros(1)], "lr": -1.0}, "optimizer", "-1.0"),
        ({"_target_": "lct.nope.Nope"}, "logger.csv", "cannot be imported"),
    ],
)
def test_instantiate_part_names_the_key_of_what_the_target_refused(node, key, named):
    from lct.builders import instantiate_part

    with pytest.raises(LctError, match=rf"^{key}.*{named}") as err:
        instantiate_part(OmegaConf.create(node) if "params" not in node else node, key)
    assert "\n" not in str(err.value)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A 2-step checkpoint on synthetic 4x8x8 latents, given the built-in MNIST VAE's codec (mu 0, s 1) so
    that lct.evaluate can decode its samples."""
    tmp = tmp_path_factory.mktemp("ckpt")
    fit(compose_cfg(tmp, ["trainer.max_steps=2", "data.batch_size=8", "~callbacks.sample_grid", "~callbacks.digits"]))
    path = tmp / "run" / "checkpoints" / "last.ckpt"
    state = torch.load(path, map_location="cpu", weights_only=False)
    state["lct"]["codec"] = {
        "mean": torch.zeros(4, 8, 8),
        "std": torch.ones(4, 8, 8),
        "vae_ref": "builtin:mnist",
        "vae_weights": None,
        "image_channels": 1,
        "image_size": 32,
    }
    torch.save(state, path)
    return path


class _Armed:
    """Unpickling this object runs `touch <marker>`: what a crafted file would do if lct unpickled it."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_crafted_reference_files_run_nothing_and_are_one_line(ckpt, tmp_path):
    armed_pt, armed_npy = tmp_path / "armed_pt", tmp_path / "armed_npy"
    torch.save({"features": _Armed(armed_pt)}, tmp_path / "evil.pt")
    np.save(tmp_path / "evil.npy", np.array([_Armed(armed_npy)], dtype=object), allow_pickle=True)
    probe = tmp_path / "probe"  # the same payload, loaded unsafely, does run: the files are armed
    np.load(_save_armed(tmp_path / "probe.npy", probe), allow_pickle=True)
    assert probe.exists()
    common = [str(ckpt), "--num-samples", "4", "--batch-size", "4", "--device", "cpu", "--no-progress"]
    out = _cli("lct.evaluate", *common, "--out", str(tmp_path / "e1"), "--reference", str(tmp_path / "evil.pt"))
    _one_line(out, str(tmp_path / "evil.pt"), "nothing in it was run")
    out = _cli("lct.evaluate", *common, "--out", str(tmp_path / "e2"), "--reference-images", str(tmp_path / "evil.npy"))
    _one_line(out, f"--reference-images {tmp_path / 'evil.npy'}", "nothing in it was run")
    assert not armed_pt.exists() and not armed_npy.exists()


def test_too_few_samples_for_precision_recall_is_one_line_before_sampling(ckpt, tmp_path):
    out = _cli("lct.evaluate", str(ckpt), "--out", str(tmp_path / "e"), "--num-samples", "3", "--device", "cpu")
    _one_line(out, "--num-samples 3", "precision and recall", "--metrics digit")
    assert not (tmp_path / "e" / "features").exists()  # refused before any sample was drawn


def _save_armed(path: Path, marker: Path) -> Path:
    np.save(path, np.array([_Armed(marker)], dtype=object), allow_pickle=True)
    return path


def _with_relative_root(ckpt: Path, out: Path, launch_dir: Path, stats_of: Path | None = None) -> Path:
    """`ckpt` as a run of an older lct recorded it: data=folder with data.root relative to its launch dir
    (and, given `stats_of`, the codec's mu/s of that latent root, as training on it would have stored)."""
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    if stats_of is not None:
        for key, name in (("mean", "mean.npy"), ("std", "std.npy")):
            state["lct"]["codec"][key] = torch.from_numpy(np.load(stats_of / name))
    config = state["lct"]["config"]
    config["data"] = {
        "_target_": "lct.data.LatentDataModule",
        "name": "folder",
        "builtin": None,
        "root": "lat",
        "latent_channels": 4,
        "latent_resolution": 8,
        "batch_size": 8,
        "epochs": None,
        "seed": 0,
    }
    config["paths"] = {**config.get("paths", {}), "root_dir": str(launch_dir)}
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, out)
    return out


def test_evaluate_names_a_relative_root_it_cannot_find_and_the_fix(ckpt, tmp_path):
    moved = _with_relative_root(ckpt, tmp_path / "copy" / "last.ckpt", tmp_path / "gone")
    (tmp_path / "elsewhere").mkdir()
    args = [str(moved), "--out", str(tmp_path / "e"), "--num-samples", "4", "--device", "cpu", "--no-progress"]
    line = _one_line(_cli("lct.evaluate", *args, cwd=tmp_path / "elsewhere"), "data.root='lat'", "--data-root")
    assert str(tmp_path / "gone" / "lat") in line and str(tmp_path / "elsewhere" / "lat") in line
    assert "lct.encode --source" not in line  # no advice to encode into a wrong place
    line = _one_line(_cli("lct.evaluate", *args, "--data-root", str(tmp_path / "elsewhere")), "--data-root")
    assert str(tmp_path / "elsewhere") in line


@pytest.mark.slow
def test_evaluate_finds_a_relative_root_under_the_launch_dir_from_anywhere(ckpt, tmp_path):
    launch = tmp_path / "launch"
    rng = np.random.default_rng(0)
    write_array_root(launch / "lat", [rng.standard_normal((16, 4, 8, 8)).astype(np.float32)])
    z = np.load(launch / "lat" / "shards" / "000000.npy")
    z[3, 0, 0, 0] = np.nan  # the reference is computed from the finite latents only
    np.save(launch / "lat" / "shards" / "000000.npy", z)
    moved = _with_relative_root(ckpt, tmp_path / "copy" / "last.ckpt", launch, stats_of=launch / "lat")
    (tmp_path / "elsewhere").mkdir()
    args = [
        str(moved),
        "--out",
        str(tmp_path / "e"),
        "--num-samples",
        "4",
        "--num-reference",
        "8",
        "--batch-size",
        "4",
        "--nfe",
        "1",
        "--device",
        "cpu",
        "--no-progress",
    ]
    out = _cli("lct.evaluate", *args, cwd=tmp_path / "elsewhere")
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"latents found at {launch / 'lat'}" in out.stderr
    assert "leaving 1 non-finite latents out of sampling" in out.stderr and "000000.npy row 3" in out.stderr
    assert (tmp_path / "e" / "metrics.json").is_file() and not (tmp_path / "elsewhere" / "lat").exists()


LAT = "lat_9f3e"  # a relative root no directory above the test's can hold by chance


def _latents(root: Path) -> Path:
    (root / "shards").mkdir(parents=True)
    (root / "metadata.json").write_text("{}")
    return root


def test_find_data_root_tries_the_launch_dir_then_above_the_checkpoint_then_here(tmp_path, monkeypatch):
    cfg = OmegaConf.create({"data": {"root": LAT, "builtin": None}, "paths": {"root_dir": str(tmp_path / "launch")}})
    ckpt = tmp_path / "project" / "outputs" / "run" / "checkpoints" / "last.ckpt"
    monkeypatch.chdir(_latents(tmp_path / "cwd" / LAT).parent)
    assert find_data_root(cfg, ckpt) == tmp_path / "cwd" / LAT
    _latents(tmp_path / "project" / LAT)  # above the checkpoint (its launch dir, moved) beats the cwd
    assert find_data_root(cfg, ckpt) == tmp_path / "project" / LAT
    _latents(tmp_path / "launch" / LAT)  # the recorded launch directory comes first
    assert find_data_root(cfg, ckpt) == tmp_path / "launch" / LAT
    assert find_data_root(cfg, ckpt, str(tmp_path / "cwd" / LAT)) == tmp_path / "cwd" / LAT  # --data-root wins
    codec = {"mean": np.zeros((4, 8, 8), np.float32)}  # the checkpoint's mu: none of the roots above
    with pytest.raises(
        LctError,
        match=r"tried .*launch/lat_9f3e.*; .*launch/lat_9f3e, .*project/lat_9f3e, .*cwd/lat_9f3e hold other latents",
    ):
        find_data_root(cfg, ckpt, codec_state=codec)
    absolute = OmegaConf.create({"data": {"root": str(tmp_path / "nowhere"), "builtin": None}})
    with pytest.raises(LctError, match=r"data\.root='.*nowhere' were not found.*--data-root"):
        find_data_root(absolute, ckpt)
