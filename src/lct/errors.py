"""The one exception type lct raises for a problem the user can fix (bad input, bad config, bad file).

Command-line entry points print such an error as one line (`error: ...`) and exit with status 2;
anything else is a bug in lct and keeps its traceback.
"""

from __future__ import annotations


class LctError(ValueError):
    """A user-fixable problem; the message names the cause, the file or key, and the fix."""
