"""The run record: `<run dir>/record.json`, one JSON file per `lct.train` run (docs/records.md).

lct.train's RunRecord callback writes it; `lct.evaluate` adds its scores (add_eval); `lct.report` reads it
(load_record, find_records). Light on purpose: no torch or Lightning import, so reading records is fast.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from lct import __version__
from lct.errors import LctError

SCHEMA_VERSION = 1  # raise on a change that an older reader would misread (docs/records.md, "Schema version")
RECORD_NAME = "record.json"

# Every top-level field of schema 1, in the order a record is written (docs/records.md has the table).
FIELDS = (
    "schema",
    "lct_version",
    "run_dir",
    "experiment",
    "choices",
    "overrides",
    "seed",
    "config",
    "status",
    "error",
    "steps",
    "wall_seconds",
    "steps_per_second",
    "host",
    "train_loss",
    "metrics",
    "curves",
    "eval",
    "checkpoint",
    "sample_grids",
    "started",
    "updated",
)
STATUSES = ("running", "finished", "stopped_nonfinite", "preempted", "failed")
HOST_FIELDS = ("hostname", "cpu", "threads", "gpu", "torch", "lightning", "lct", "git_commit", "git_dirty")
STEP_FIELDS = ("done", "total")
SOURCE_DIR = Path(__file__).resolve().parent  # git questions are asked about lct's own checkout


def now() -> str:
    """The current time, ISO 8601 with the UTC offset."""
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")


def _finite(value):
    """NaN and infinities become None (strict JSON has no spelling for them), recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def record_path(path) -> Path:
    """The record file of a run directory, or the file itself."""
    path = Path(path)
    return path / RECORD_NAME if path.is_dir() else path


def _dumps(record: dict) -> str:
    """JSON with one line per field, and one line per curve (a curve is hundreds of [step, value] pairs)."""
    dump = lambda v, indent=1: json.dumps(v, indent=indent, default=str).replace("\n", "\n ")
    fields = []
    for key, value in record.items():
        if key == "curves" and isinstance(value, dict) and value:
            value = "{\n" + ",\n".join(f"  {dump(k)}: {dump(v, None)}" for k, v in value.items()) + "\n }"
        else:
            value = dump(value)
        fields.append(f" {dump(key)}: {value}")
    return "{\n" + ",\n".join(fields) + "\n}\n"


def write_record(run_dir, record: dict) -> Path:
    """Write <run_dir>/record.json atomically (a temporary file in the same folder, then os.replace)."""
    path = Path(run_dir) / RECORD_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{RECORD_NAME}.tmp-{os.getpid()}")
    try:
        tmp.write_text(_dumps(_finite(record)))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_record(path) -> dict:
    """A record from its file or its run directory; every field of this schema present (None where missing)."""
    path = record_path(path)
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise LctError(f"no run record at {path}: lct.train writes {RECORD_NAME} into each run directory") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise LctError(f"run record {path} is unreadable ({err}); delete it or rerun the run to rewrite it") from None
    if not isinstance(record, dict):
        raise LctError(f"run record {path} holds a {type(record).__name__}, not a JSON object; it is not a record")
    schema = record.get("schema")
    if isinstance(schema, int) and schema > SCHEMA_VERSION:
        raise LctError(
            f"run record {path} has schema {schema}, newer than this lct reads ({SCHEMA_VERSION}): upgrade lct"
        )
    for key in FIELDS:
        record.setdefault(key, None)
    for key, fields in (("host", HOST_FIELDS), ("steps", STEP_FIELDS)):
        if isinstance(record[key], dict):
            for field in fields:
                record[key].setdefault(field, None)
    if isinstance(record["metrics"], dict):
        record["metrics"].setdefault("last", {})
        record["metrics"].setdefault("best", {})
    return record


def find_records(dirs) -> list[Path]:
    """Every record.json below the given directories (a record file itself counts), sorted, each once."""
    found = set()
    for d in [dirs] if isinstance(dirs, (str, os.PathLike)) else dirs:
        d = Path(d)
        if d.is_file() and d.name == RECORD_NAME:
            found.add(d.resolve())
        elif d.is_dir():
            found.update(p.resolve() for p in d.rglob(RECORD_NAME) if p.is_file())
        else:
            raise LctError(f"{d} is neither a directory nor a {RECORD_NAME}: pass run or sweep directories")
    return sorted(found)


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=SOURCE_DIR, capture_output=True, text=True, timeout=10, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None  # no git, or lct is installed outside a checkout
    return out.strip()


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None  # macOS / Windows: the best the standard library knows


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def host_info(threads: int | None = None, gpu: str | None = None) -> dict:
    """The machine and software a run used; threads and gpu come from the caller, which has torch loaded."""
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {
        "hostname": platform.node() or None,
        "cpu": _cpu_model(),
        "threads": threads,
        "gpu": gpu,
        "torch": _version("torch"),
        "lightning": _version("lightning"),
        "lct": __version__,
        "git_commit": commit or None,
        "git_dirty": None if status is None else bool(status),
    }


def new_record(run_dir, experiment: str | None = None) -> dict:
    """An empty record of this schema (every field present) for a run directory."""
    record = dict.fromkeys(FIELDS)
    record.update(
        schema=SCHEMA_VERSION,
        lct_version=__version__,
        run_dir=str(Path(run_dir).resolve()),
        experiment=experiment,
        choices={},
        overrides=[],
        status="running",
        steps={"done": 0, "total": None},
        metrics={"last": {}, "best": {}},
        curves={},
        eval={},
        sample_grids=[],
        started=now(),
        updated=now(),
    )
    return record


def add_eval(run_dir, scores: dict, protocol: str) -> Path:
    """Merge one evaluation's scores into the run's record under eval[protocol] (lct.evaluate calls it)."""
    record = load_record(run_dir)
    evals = record["eval"] if isinstance(record["eval"], dict) else {}
    evals[str(protocol)] = {**evals.get(str(protocol), {}), **scores}
    record.update(eval=evals, updated=now())
    return write_record(record_path(run_dir).parent, record)


def run_dir_of(checkpoint) -> Path | None:
    """The run directory holding a checkpoint (<run>/checkpoints/x.ckpt or <run>/x.ckpt) if it has a record."""
    for parent in Path(checkpoint).resolve().parents[:2]:
        if (parent / RECORD_NAME).is_file():
            return parent
    return None


def eval_scores(report: dict, **extra) -> dict:
    """lct.evaluate's report flattened for add_eval: results {"1nfe": {"fid": v}} -> {"fid_1nfe": v}, plus extra."""
    scores = {}
    for section, prefix in (("results", ""), ("digits", "digits_")):
        for nfe, values in (report.get(section) or {}).items():
            for key, value in values.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    scores[f"{prefix}{key}_{nfe}"] = value
    return {**scores, "checkpoint": report.get("checkpoint"), **extra}


# Which way a metric improves, by the words in its key (e.g. "digits/fid_1nfe", "val/recall_2nfe").
LOWER_IS_BETTER = ("fid", "kid", "loss")
HIGHER_IS_BETTER = ("precision", "recall", "legible", "coverage")


def metric_direction(key: str) -> str | None:
    """ "min" or "max": how `metrics.best` picks a key's best value; None for a key of neither kind."""
    name = key.rsplit("/", 1)[-1].lower()
    if any(word in name for word in LOWER_IS_BETTER):
        return "min"
    if any(word in name for word in HIGHER_IS_BETTER):
        return "max"
    return None
