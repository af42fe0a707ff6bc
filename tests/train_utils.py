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
