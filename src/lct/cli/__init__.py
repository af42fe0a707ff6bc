"""The command-line layer: one module per command (its parser and main) and run_cli, the one place where an
exception becomes the error contract: a user-fixable problem is one line `error: <cause, key or file, fix>`
on stderr and exit status 2 (docs/architecture.md).

User-fixable: an LctError, argparse's own errors (a bad flag or value: the same one line instead of usage +
error), Hydra's and OmegaConf's config errors (an unknown group option or key, a bad override), and an OSError
naming a file (missing, unreadable). Anything else is a bug in lct and keeps its traceback. `--debug` anywhere
on the command line, LCT_DEBUG=1 or HYDRA_FULL_ERROR=1 keeps the traceback for all of them.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from contextlib import contextmanager

from lct.errors import HYDRA_RAISES, LctError, debug_requested

DEBUG_FLAG = "--debug"
CONFIG_FIX = "fix it on the command line or in the config (`--cfg job` prints the composed config, `--help` the groups)"


def run_cli(main, *args):
    """Call main(*args); a user-fixable error becomes `error: <message>` on stderr and its exit status (2, or the
    error's own `exit_code`: 143 for a run preempted by a signal, lct.train.preemption)."""
    if DEBUG_FLAG in sys.argv:
        sys.argv.remove(DEBUG_FLAG)  # before argparse or Hydra reads the command line
        os.environ["LCT_DEBUG"] = "1"
    try:
        with hydra_errors_raise(), argparse_errors_raise():
            return main(*args)
    except Exception as err:
        line = error_line(err)
        if line is None or debug_requested():
            raise
        print("error: " + " ".join(line.split()), file=sys.stderr)
        sys.exit(getattr(err, "exit_code", 2))


def error_line(err: Exception) -> str | None:
    """The message of a user-fixable error (see the module's docstring); None for a bug."""
    if isinstance(err, LctError):
        return str(err)
    if type(err).__module__.split(".")[0] in ("hydra", "omegaconf"):
        return config_error_line(err)
    if isinstance(err, OSError) and err.filename:
        return f"cannot use {err.filename}: {err.strerror or err}; check the path and its permissions"
    return None


def config_error_line(err: Exception) -> str:
    """Hydra's or OmegaConf's message on one line: the key and what is wrong with it, the options if it lists
    them, and the fix."""
    text = " ".join(_message_lines(str(err).split("Config search path")[0]))
    cause = err.__cause__
    if cause is not None and type(cause).__module__.split(".")[0] == "omegaconf":
        text += f" ({'; '.join(_message_lines(str(cause)))})"
    text = re.sub(  # Hydra lists a group's options one per line
        r"(Available options in '[^']+':)((?: \S+)+)$", lambda m: f"{m[1]} {', '.join(m[2].split())}", text
    )
    return f"{text.rstrip('.')}; {CONFIG_FIX}"


def _message_lines(text: str) -> list[str]:
    """The lines of an error message that say something (OmegaConf's object_type/reference_type lines do not)."""
    lines = (line.strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith(("object_type", "reference_type"))]


@contextmanager
def argparse_errors_raise():
    """argparse's errors (usage + `error:`, exit 2) as an LctError naming the program, its message and --help."""
    original = argparse.ArgumentParser.error

    def error(parser: argparse.ArgumentParser, message: str):
        prog = command_name(parser.prog)
        raise LctError(f"{prog}: {message}; see `{prog} --help`")

    argparse.ArgumentParser.error = error
    try:
        yield
    finally:
        argparse.ArgumentParser.error = original


def command_name(prog: str) -> str:
    """argparse's prog, or `python -m <package>` where it is `__main__.py` (Hydra's parser under python -m)."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if prog == "__main__.py" and spec is not None:
        return "python -m " + spec.name.removesuffix(".__main__")
    return prog


@contextmanager
def hydra_errors_raise():
    """Have Hydra raise its errors (an unknown option or key, a bad override) to run_cli instead of printing them
    as a block: HYDRA_FULL_ERROR=1, marked as lct's own (lct.errors.HYDRA_RAISES) so that it asks for no
    traceback, here and in the processes the run starts (DDP ranks, launcher jobs)."""
    if "HYDRA_FULL_ERROR" in os.environ:  # the user's own (debugging), or a parent lct process's
        yield
        return
    os.environ.update({"HYDRA_FULL_ERROR": "1", HYDRA_RAISES: "1"})
    try:
        yield
    finally:
        for key in ("HYDRA_FULL_ERROR", HYDRA_RAISES):
            os.environ.pop(key, None)


# -- argparse types shared by the commands: a bad value is argparse's error, hence the one line above ---------


def at_least(low: int):
    """argparse type: an integer >= low."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {value}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


positive_int = at_least(1)


def fraction(text: str) -> float:
    """argparse type: a float in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid float value: {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be a fraction in [0, 1), got {value}")
    return value


def device(text: str) -> str:
    """argparse type: a torch device string (cpu, cuda, cuda:1, mps, ...)."""
    import torch

    try:
        torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a torch device; pass cpu, cuda or cuda:<index>") from None
    return text
