"""`python -m lct.train [experiment=...] [group=option ...]`: train a latent consistency model."""
import logging
import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

# conf/ sits at the repository root (src layout, editable install); LCT_CONF_DIR points elsewhere.
CONF_DIR = os.environ.get("LCT_CONF_DIR", str(Path(__file__).resolve().parents[3] / "conf"))
log = logging.getLogger("lct.train")


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def main(cfg: DictConfig) -> None:
    from lct.data.shards import LatentDataError
    from lct.train.run import train  # heavy imports after Hydra has parsed the command line
    try:
        train(cfg)
    except (LatentDataError, FileNotFoundError) as err:
        # Problems with the user's data or paths: the message says what to run; a traceback would not help.
        log.error("%s", err)
        sys.exit(2)


if __name__ == "__main__":
    main()
