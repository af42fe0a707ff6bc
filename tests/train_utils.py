"""Compose and run lct.train configs inside tests (no Hydra runtime: paths are overridden)."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir

CONF = str(Path(__file__).resolve().parents[1] / "conf")
QUIET = ["trainer.enable_progress_bar=false", "~callbacks.progress", "logger=none"]


def compose_cfg(tmp_path, overrides=(), data="synthetic", backbone="unet_tiny"):
    """A composed run config writing under tmp_path."""
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose(
            "config",
            overrides=[
                f"data={data}",
                f"backbone={backbone}",
                f"paths.root_dir={tmp_path}",
                f"paths.output_dir={tmp_path}/run",
                *QUIET,
                *overrides,
            ],
        )


def fit(cfg):
    """Build and fit; returns the trained module."""
    from lct.train.run import build

    module, dm, trainer, ckpt = build(cfg)
    trainer.fit(module, datamodule=dm, ckpt_path=ckpt)
    return module


def sample_npz(ckpt, nfe: int, out, num_samples: int = 3, extra=()):
    """`python -m lct.sample CKPT` on the CPU without PNGs, at `nfe` (+ `extra` flags); the samples.npz it wrote."""
    import numpy as np

    from lct.cli import sample as sample_cli

    args = [
        str(ckpt),
        *f"--num-samples {num_samples} --nfe {nfe} --device cpu --no-png --out".split(),
        str(out),
        *extra,
    ]
    return np.load(sample_cli.main(args) / "samples.npz")


def tensors(module) -> dict:
    """Every tensor of a module's state (parameters, EMAs, buffers), detached copies."""
    import torch

    return {k: v.detach().clone() for k, v in module.state_dict().items() if torch.is_tensor(v)}


def assert_resume_is_exact(tmp_path, overrides, steps: int = 6):
    """k steps + resume from the step-k checkpoint + k steps equal 2k steps, bitwise (k = steps // 2); returns
    (the straight module, the resumed one)."""
    import torch

    k = steps // 2
    common = [*overrides, f"trainer.max_steps={steps}", f"callbacks.checkpoint.every_n_train_steps={k}"]
    common.append("callbacks.checkpoint.save_top_k=-1")
    full = fit(compose_cfg(tmp_path / "a", common))
    mid = next((tmp_path / "a" / "run" / "checkpoints").glob(f"*step={k}.ckpt"))
    resumed = fit(compose_cfg(tmp_path / "b", [*common, f"ckpt_path='{mid}'"]))
    a, b = tensors(full), tensors(resumed)
    assert resumed.global_step == steps and a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
    return full, resumed


def assert_ddp_step_equals_single_process(tmp_path, overrides):
    """One step on two CPU ranks (trainer=ddp_cpu) equals one step in one process on the same global batch."""
    import torch

    common = [*overrides, "trainer.max_steps=1", "~callbacks.final_checkpoint", "~callbacks.checkpoint"]
    single = fit(compose_cfg(tmp_path / "one", common))
    double = fit(compose_cfg(tmp_path / "two", [*common, "trainer=ddp_cpu", "trainer.enable_progress_bar=false"]))
    a, b = tensors(single), tensors(double)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=key)
