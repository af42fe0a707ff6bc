"""`python -m lct.train [experiment=...] [group=option ...]`: train a latent consistency model."""

import os
from pathlib import Path

import hydra
from omegaconf import DictConfig

from lct.cli import run_cli

# conf/ sits at the repository root (src layout, editable install); LCT_CONF_DIR points elsewhere.
CONF_DIR = os.environ.get("LCT_CONF_DIR", str(Path(__file__).resolve().parents[3] / "conf"))


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def main(cfg: DictConfig) -> None:
    from lct.train.run import train  # heavy imports after Hydra has parsed the command line

    run_cli(train, cfg)  # inside the task: Hydra would print its own traceback for an LctError


if __name__ == "__main__":
    run_cli(main)  # strips --debug before Hydra parses the command line
