"""The one exception type lct raises for a problem the user can fix (bad input, bad config, bad file).

Command-line entry points print such an error as one line (`error: ...`, lct.cli.run_cli) and exit with
status 2; anything else is a bug in lct and keeps its traceback.
"""

from __future__ import annotations

import os


class LctError(ValueError):
    """A user-fixable problem; the message names the cause, the file or key, and the fix."""


# Set beside HYDRA_FULL_ERROR=1 by lct.cli.run_cli, which has Hydra raise its errors so that they become one line:
# that HYDRA_FULL_ERROR asks for no traceback (in the command and in the processes it starts).
HYDRA_RAISES = "LCT_HYDRA_RAISES"


def debug_requested() -> bool:
    """LCT_DEBUG=1 or the user's HYDRA_FULL_ERROR=1: keep tracebacks (and an error's own cause) instead of one line."""
    if os.environ.get("LCT_DEBUG", "") not in ("", "0"):
        return True
    return os.environ.get("HYDRA_FULL_ERROR", "") not in ("", "0") and not os.environ.get(HYDRA_RAISES)
