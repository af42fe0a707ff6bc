"""One log line per fact in a `python -m lct.train` run: Lightning's own console handler and one deprecation
warning of a dependency are turned off here, in the entry point, so the library keeps Python's defaults."""

from __future__ import annotations

import logging
import warnings

# Lightning's loggers: `lightning` adds a console handler on import and `lightning.pytorch` / `lightning.fabric` add
# one (and stop propagating) when the root logger has none yet.
LIGHTNING_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric")
# Lightning 2.6's result collection builds torch's deprecated LeafSpec (torch >= 2.10 warns on every run); nothing
# in lct can act on it.
LEAF_WARNING = r"`isinstance\(treespec, LeafSpec\)` is deprecated"
LEAF_WARNING_MODULE = r"lightning\.pytorch\.utilities\._pytree"


def one_line_per_fact() -> None:
    """Hand Lightning's records to the root logger's handlers (Hydra's console and run log) only, and drop the
    LeafSpec deprecation warning that Lightning's own code triggers."""
    warnings.filterwarnings("ignore", message=LEAF_WARNING, category=FutureWarning, module=LEAF_WARNING_MODULE)
    import lightning  # noqa: F401  (its handlers exist once it is imported)

    if not logging.getLogger().handlers:  # no root handler (logging not configured): Lightning's stay the only ones
        return
    for name in LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if type(handler) is logging.StreamHandler:  # a console handler; a file handler someone added stays
                logger.removeHandler(handler)
        logger.propagate = True
