"""The one exception type lct raises for a problem the user can fix (bad input, bad config, bad file).

Command-line entry points print such an error as one line (`error: ...`, lct.cli.run_cli) and exit with
status 2; anything else is a bug in lct and keeps its traceback.
"""

from __future__ import annotations

import os


class LctError(ValueError):
    """A user-fixable problem; the message names the cause, the file or key, and the fix."""


def debug_requested() -> bool:
    """LCT_DEBUG=1 or HYDRA_FULL_ERROR=1: keep tracebacks (and an error's own cause) instead of one line."""
    return any(os.environ.get(key, "") not in ("", "0") for key in ("LCT_DEBUG", "HYDRA_FULL_ERROR"))
