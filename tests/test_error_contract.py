"""Issue 38, item 1: one error contract. A bad config value, unknown option or key, bad flag or unreadable input
file, in every entry point, ends in exactly one stderr line `error: ...` naming the key or file, a non-zero exit
status and no traceback (lct.cli.run_cli is the one place that makes that line).

Each command runs at least once as a real subprocess (started together: the imports dominate); the other inputs
go through the same run_cli path in this process. tests/test_bad_inputs.py holds lct.train's config values."""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from test_eval_helpers import fake_checkpoint, install_fake_loader

from lct.cli import run_cli

SRC = str(Path(__file__).resolve().parents[1] / "src")
COMMANDS = ("train", "sample", "evaluate", "encode", "fit_c", "analyze", "report")  # python -m lct.<command>
TRAIN = ["data=synthetic", "backbone=unet_tiny", "logger=none", "trainer.enable_progress_bar=false"]
# tqdm's bar (lct.encode) is progress, not a message
PROGRESS = re.compile(r"^\S*:?\s*\d+%\|")


def error_line(code, stderr: str, *named: str) -> str:
    """The single `error:` line of a refused command; it names every string in `named`."""
    assert code not in (0, None), stderr[-3000:]
    assert "Traceback" not in stderr and "HYDRA_FULL_ERROR" not in stderr, stderr[-3000:]
    lines = [line for line in stderr.splitlines() if line.strip() and not PROGRESS.match(line)]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr[-3000:]
    assert all(name in lines[0] for name in named), (lines[0], named)
    return lines[0]


# -- real subprocesses -------------------------------------------------------------------------


RUN = "hydra.run.dir={tmp}/runs/{case}"  # one run dir per case: they run at once, and a run dir takes one run
SUBPROCESS = {
    # case: (command, argv, strings the error line names); {tmp} is the module's temporary folder
    "train_unknown_option": ("train", [*TRAIN, "backbone=nope", RUN], ["backbone/nope", "unet_tiny"]),
    "train_unknown_key": ("train", [*TRAIN, "foo.bar=1", RUN], ["foo.bar"]),
    "train_bad_flag": ("train", [*TRAIN, "--bogus", RUN], ["--bogus"]),
    "train_unregistered_name": ("train", [*TRAIN, "backbone.name=nope", RUN], ["backbone.name", "nope"]),
    "train_metric_key": ("train", [*TRAIN, "+method.metric.foo=1", RUN], ["method.metric.foo"]),
    "train_synthetic_key": ("train", [*TRAIN, "+data.foo=1", RUN], ["data.foo"]),
    "sample_missing_ckpt": ("sample", ["{tmp}/missing.ckpt"], ["{tmp}/missing.ckpt"]),
    "evaluate_junk_ckpt": ("evaluate", ["{tmp}/junk.ckpt"], ["{tmp}/junk.ckpt"]),
    "encode_missing_folder": (
        "encode",
        ["--source", "{tmp}/no_images", "--vae", "builtin:mnist", "--size", "32", "--out", "{tmp}/lat"],
        ["{tmp}/no_images", "--source"],
    ),
    "fit_c_missing_run": ("fit_c", ["{tmp}/no_run"], ["{tmp}/no_run"]),
    "analyze_missing_root": ("analyze", ["--root", "{tmp}/no_root", "--out", "{tmp}/an"], ["{tmp}/no_root"]),
    "report_missing_dir": ("report", ["{tmp}/no_runs"], ["{tmp}/no_runs"]),
}


def fill(items: list[str], tmp: Path, case: str = "") -> list[str]:
    return [s.replace("{tmp}", str(tmp)).replace("{case}", case) for s in items]


def _run(command: str, argv: list[str]) -> subprocess.CompletedProcess:
    """`python -m <command> argv` as a user runs it (no HYDRA_FULL_ERROR / LCT_DEBUG, which keep tracebacks)."""
    env = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "LCT_DEBUG")}
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    argv = [sys.executable, "-m", f"lct.{command}", *argv]
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env)


@pytest.fixture(scope="module")
def subprocess_results(tmp_path_factory):
    """Every subprocess case, four at a time: {case: (CompletedProcess, strings named)}."""
    tmp = tmp_path_factory.mktemp("contract")
    (tmp / "junk.ckpt").write_text("not a checkpoint\n")
    with ThreadPoolExecutor(4) as pool:
        futures = {name: pool.submit(_run, cmd, fill(argv, tmp, name)) for name, (cmd, argv, _) in SUBPROCESS.items()}
    return {name: (future.result(), fill(SUBPROCESS[name][2], tmp)) for name, future in futures.items()}


def test_every_command_runs_as_a_subprocess():
    assert {command for command, _, _ in SUBPROCESS.values()} == set(COMMANDS)


@pytest.mark.parametrize("case", sorted(SUBPROCESS))
def test_subprocess_bad_input_is_one_line(subprocess_results, case):
    out, named = subprocess_results[case]
    line = error_line(out.returncode, out.stderr, *named)
    assert out.returncode == 2, line


# -- in this process, through run_cli ----------------------------------------------------------


@pytest.fixture
def user_env(monkeypatch):
    """The environment of a user who asked for no traceback (conftest sets HYDRA_FULL_ERROR for the tests)."""
    for key in ("HYDRA_FULL_ERROR", "LCT_DEBUG"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(sys, "argv", ["lct"])


def run_in_process(capsys, command: str, argv: list[str]):
    """run_cli(<command>.main, argv): (exit status, stderr)."""
    main = importlib.import_module(f"lct.cli.{command}").main
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        run_cli(main, argv)
    return exit_info.value.code, capsys.readouterr().err


def _files(tmp: Path) -> None:
    """Unreadable inputs of every kind."""
    (tmp / "junk.ckpt").write_text("not a checkpoint\n")
    (tmp / "junk").mkdir()
    (tmp / "junk" / "metrics.csv").write_text("a,b\n1,2\n")
    (tmp / "junk" / "record.json").write_text("{\n")
    (tmp / "meta").mkdir()
    (tmp / "meta" / "metadata.json").write_text("{cut off")
    (tmp / "images").mkdir()
    (tmp / "images" / "a.png").write_bytes(b"not a png")


IN_PROCESS = [
    # (command, argv with {tmp}, strings named)
    ("sample", ["{tmp}/junk.ckpt"], ["{tmp}/junk.ckpt"]),
    ("sample", ["{tmp}/junk.ckpt", "--nfe", "abc"], ["--nfe", "'abc'", "--help"]),
    ("sample", [], ["checkpoint", "--help"]),
    ("sample", ["{tmp}/junk.ckpt", "--bogus"], ["--bogus"]),
    ("evaluate", ["{tmp}/missing.ckpt"], ["{tmp}/missing.ckpt"]),
    ("evaluate", ["{tmp}/junk.ckpt", "--metrics", "nope"], ["--metrics", "nope"]),
    ("evaluate", ["{tmp}/junk.ckpt", "--num-samples", "x"], ["--num-samples", "'x'"]),
    ("encode", ["--out", "{tmp}/lat"], ["--source"]),
    (
        "encode",
        ["--source", "mnist", "--vae", "builtin:mnist", "--size", "0", "--out", "{tmp}/lat"],
        ["--size", "got 0"],
    ),
    ("encode", ["--source", "mnist", "--vae", "{tmp}/no_vae", "--size", "32", "--out", "{tmp}/lat"], ["{tmp}/no_vae"]),
    (
        "encode",
        ["--source", "{tmp}/images", "--vae", "builtin:mnist", "--size", "32", "--out", "{tmp}/lat"],
        ["images"],
    ),
    ("fit_c", ["{tmp}/junk/metrics.csv"], ["{tmp}/junk/metrics.csv", "train/N"]),
    ("fit_c", ["{tmp}/junk", "--reduce", "nope"], ["--reduce", "nope"]),
    ("fit_c", ["{tmp}/junk", "--skip", "2"], ["--skip", "[0, 1)", "2.0"]),
    ("fit_c", ["{tmp}/junk", "--min-n", "1"], ["--min-n", ">= 2"]),
    ("analyze", ["--root", "{tmp}/meta", "--out", "{tmp}/an"], ["{tmp}/meta/metadata.json"]),
    ("analyze", ["--builtin", "nope", "--root", "{tmp}/an_root", "--out", "{tmp}/an"], ["'nope'", "mnist"]),
    ("analyze", ["--max-items", "x"], ["--max-items", "'x'"]),
    ("report", ["{tmp}/junk"], ["{tmp}/junk/record.json"]),
    ("report", [], ["DIR", "--help"]),
]


@pytest.mark.parametrize("command, argv, named", IN_PROCESS, ids=[f"{c[0]}-{i}" for i, c in enumerate(IN_PROCESS)])
def test_bad_input_is_one_line(tmp_path, capsys, user_env, command, argv, named):
    _files(tmp_path)
    code, err = run_in_process(capsys, command, fill(argv, tmp_path))
    assert code == 2
    error_line(code, err, *fill(named, tmp_path))


# sample/evaluate values that need a checkpoint: a tiny bundle stands in for lct.io.checkpoint's loader.
CHECKPOINT_VALUES = [
    ("sample", ["--nfe", "7"], ["nfe", "7"]),
    ("sample", ["--num-samples", "0"], ["--num-samples", "0"]),
    ("sample", ["--sigmas", "1", "5"], ["--sigmas", "descending"]),
    ("sample", ["--batch-size", "0"], ["--batch-size", "0"]),
    ("sample", ["--device", "nope"], ["--device", "nope"]),
    ("sample", ["--nfe", "2", "--sigma-mid-index", "9999"], ["sigma_mid index", "9999"]),
    ("evaluate", ["--num-samples", "1"], ["--num-samples", ">= 2"]),
    ("evaluate", ["--nfe", "3"], ["nfe", "3"]),
    ("evaluate", ["--batch-size", "0"], ["--batch-size", "0"]),
]


@pytest.mark.parametrize("command, argv, named", CHECKPOINT_VALUES)
def test_bad_sampling_value_is_one_line(tmp_path, capsys, monkeypatch, user_env, command, argv, named):
    install_fake_loader(monkeypatch)
    ckpt = fake_checkpoint(tmp_path)
    code, err = run_in_process(capsys, command, [str(ckpt), "--device", "cpu", "--out", str(tmp_path / "o"), *argv])
    assert code == 2
    error_line(code, err, *named)
    assert not (tmp_path / "o" / "samples.npz").exists()


def test_an_unreadable_file_the_code_did_not_expect_is_one_line(tmp_path, capsys, user_env):
    """An OSError that names its file (missing, a folder, no permission) is the user's to fix, not a bug."""
    for path in (tmp_path / "missing.txt", tmp_path):
        with pytest.raises(SystemExit) as exit_info:
            run_cli(lambda p: open(p).read(), path)
        error_line(exit_info.value.code, capsys.readouterr().err, str(path))


def test_debug_keeps_the_traceback(tmp_path, capsys, monkeypatch, user_env):
    """--debug on the command line (or LCT_DEBUG=1): the error itself, with its traceback, and no line."""
    monkeypatch.setattr(sys, "argv", ["lct", "--debug"])
    monkeypatch.setenv("LCT_DEBUG", "0")
    main = importlib.import_module("lct.cli.fit_c").main
    with pytest.raises(Exception, match="no metrics.csv"):
        run_cli(main, [str(tmp_path / "nothing")])
    assert os.environ["LCT_DEBUG"] == "1" and "error:" not in capsys.readouterr().err


def test_run_cli_leaves_the_environment_and_argparse_as_they_were(tmp_path, capsys, user_env):
    import argparse

    error = argparse.ArgumentParser.error
    run_in_process(capsys, "report", [str(tmp_path / "none")])
    assert argparse.ArgumentParser.error is error and "HYDRA_FULL_ERROR" not in os.environ
    with pytest.raises(SystemExit):  # outside run_cli argparse is itself again
        argparse.ArgumentParser(prog="x").parse_args(["--bogus"])
    assert "usage: x" in capsys.readouterr().err


def test_a_bug_keeps_its_traceback(user_env):
    """Anything that is not the user's to fix is raised as itself."""

    def buggy(argv):
        return {}[argv]

    with pytest.raises(KeyError):
        run_cli(buggy, "key")
