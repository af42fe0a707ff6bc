"""The command-line layer: one module per command (its parser and main) and run_cli, where a user-fixable
problem (LctError) becomes one line on stderr and exit status 2.

`--debug` anywhere on the command line, LCT_DEBUG=1 or HYDRA_FULL_ERROR=1 keeps the traceback instead.
"""

from __future__ import annotations

import os
import sys

from lct.errors import LctError, debug_requested

DEBUG_FLAG = "--debug"


def run_cli(main, *args):
    """Call main(*args); an LctError becomes `error: <message>` on stderr and its exit status (2, or the error's
    own `exit_code`: 143 for a run preempted by a signal, lct.train.preemption)."""
    if DEBUG_FLAG in sys.argv:
        sys.argv.remove(DEBUG_FLAG)  # before argparse or Hydra reads the command line
        os.environ["LCT_DEBUG"] = "1"
    try:
        return main(*args)
    except LctError as err:
        if debug_requested():
            raise
        print("error: " + " ".join(str(err).split()), file=sys.stderr)
        sys.exit(getattr(err, "exit_code", 2))
