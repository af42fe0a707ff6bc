"""`python -m lct.train [experiment=...] [group=option ...]`: train a latent consistency model."""

import os
from pathlib import Path

import hydra
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from lct.cli import run_cli
from lct.cli.logs import one_line_per_fact
from lct.errors import LctError
from lct.train.rundir import make_run_dir
from lct.train.threads import share_cores

# conf/ sits at the repository root (src layout, editable install); LCT_CONF_DIR points elsewhere.
CONF_DIR = os.environ.get("LCT_CONF_DIR", str(Path(__file__).resolve().parents[3] / "conf"))


class CheckRunDir(Callback):
    """Hydra callback (conf/hydra): an unwritable hydra.run.dir / hydra.sweep.dir is one line and exit status 2
    before Hydra creates it (Hydra's own failure is a traceback)."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        _check(config, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        _check(config, "hydra.sweep.dir")


def _check(config: DictConfig, key: str) -> None:
    run_cli(make_run_dir, Path(str(OmegaConf.select(config, key))), key)


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def main(cfg: DictConfig) -> None:
    from lct.train.run import train  # heavy imports after Hydra has parsed the command line

    one_line_per_fact()  # after Hydra's logging setup: Lightning's lines go through it once
    share_cores()
    run_cli(train, cfg)  # inside the task: Hydra would print its own traceback for an LctError


def checked_main() -> None:
    """main, once the config directory is known to exist (Hydra's own message would be a traceback)."""
    if not (Path(CONF_DIR) / "config.yaml").is_file():
        raise LctError(
            f"no lct config in {CONF_DIR} (config.yaml): lct reads the repository's conf/ through an editable "
            "install (`make install`); point LCT_CONF_DIR=... at a conf/ folder"
        )
    main()


def entry() -> None:
    """`python -m lct.train` and the console script `lct-train`."""
    run_cli(checked_main)  # strips --debug before Hydra parses the command line
