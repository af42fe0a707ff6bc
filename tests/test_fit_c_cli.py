"""python -m lct.fit_c on synthetic training logs: exact recovery, outputs, refusals."""

import csv
import json

import numpy as np
import pytest
from omegaconf import OmegaConf

from lct.cli import fit_c
from lct.core.fit import power_law
from lct.errors import LctError
from lct.train import c_fit

HEADER = ["epoch", "step", "train/N", "train/loss", "train/td_std"]


def write_log(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(HEADER)
        w.writerows(rows)


def exact_rows(steps, slope, offset, per_stage=4):
    """Rows of a run whose td_std follows the power law exactly; loss-only rows in between (as Lightning writes)."""
    rows = []
    for i, step in enumerate(steps):
        n = [11, 21, 41, 81, 161][i // per_stage]
        rows.append([0, step, n, 1.0, float(power_law(n, slope, offset))])
        rows.append([0, step + 1, "", 0.9, ""])
    return rows


def test_recovers_constants_and_writes_config_json_plot(tmp_path, capsys):
    write_log(tmp_path / "run/csv/version_0/metrics.csv", exact_rows(range(0, 200, 10), -0.9, -1.2))
    out = tmp_path / "fit"
    result = fit_c.main([str(tmp_path / "run"), "--out", str(out)])
    assert result["slope"] == pytest.approx(-0.9) and result["offset"] == pytest.approx(-1.2)
    assert result["r2"] == pytest.approx(1.0)
    np.testing.assert_allclose(result["spread_over_fit"], 1.0)
    cfg = OmegaConf.load(out / "c_schedule.yaml")  # parsed only; building it is the schedule's business
    assert cfg["_target_"] == "lct.core.c_schedules.AdaptiveC"
    assert cfg["slope"] == pytest.approx(-0.9, abs=1e-5) and cfg["offset"] == pytest.approx(-1.2, abs=1e-5)
    assert (out / "c_schedule.yaml").read_text().startswith("# @package method.c\n")
    assert OmegaConf.to_container(cfg)["s0"] == "${method.curriculum.s0}"
    assert json.loads((out / "fit.json").read_text())["stages"] == [11, 21, 41, 81, 161]
    assert (out / "fit.png").stat().st_size > 0
    assert "R^2 = 1.0000" in capsys.readouterr().out


def test_resumed_run_versions_are_merged_last_row_wins(tmp_path):
    run = tmp_path / "run"
    write_log(run / "csv/version_0/metrics.csv", [[0, 0, 11, 1, 0.5], [0, 10, 21, 1, 999.0]])
    write_log(run / "csv/version_1/metrics.csv", [[0, 10, 21, 1, 0.25], [0, 20, 41, 1, 0.125]])
    steps, n, s = c_fit.read_series(c_fit.metrics_files(run))
    np.testing.assert_array_equal(steps, [0, 10, 20])
    np.testing.assert_array_equal(n, [11, 21, 41])
    np.testing.assert_array_equal(s, [0.5, 0.25, 0.125])


def test_min_n_leaves_early_stages_out_of_the_fit(tmp_path):
    rows = exact_rows(range(0, 200, 10), -1.0, -2.0)
    rows[0][4] = rows[2][4] = 50.0  # the first stage is off the law
    rows[4][4] = rows[6][4] = 50.0
    write_log(tmp_path / "m.csv", rows)
    result = fit_c.main([str(tmp_path / "m.csv"), "--out", str(tmp_path / "o"), "--min-n", "21"])
    assert result["slope"] == pytest.approx(-1.0) and result["r2"] == pytest.approx(1.0)
    assert result["fitted_in"] == [False, True, True, True, True]


def test_refuses_to_overwrite_a_config_it_did_not_write(tmp_path):
    write_log(tmp_path / "m.csv", exact_rows(range(0, 200, 10), -1.0, -2.0))
    mine = tmp_path / "adaptive.yaml"
    mine.write_text("# @package method.c\nschedule: adaptive\n")
    with pytest.raises(LctError, match="not written by lct.fit_c"):
        fit_c.main([str(tmp_path / "m.csv"), "--out", str(tmp_path / "o"), "--config", str(mine)])
    assert mine.read_text() == "# @package method.c\nschedule: adaptive\n"
    ours = tmp_path / "o" / "again.yaml"
    for _ in range(2):  # its own output it rewrites
        fit_c.main([str(tmp_path / "m.csv"), "--out", str(tmp_path / "o"), "--config", str(ours)])


def test_clear_errors_for_missing_or_foreign_logs(tmp_path):
    with pytest.raises(LctError, match="no metrics.csv"):
        c_fit.metrics_files(tmp_path)
    (tmp_path / "other.csv").write_text("step,val/fid\n0,3.0\n")
    with pytest.raises(LctError, match="train/td_std"):
        c_fit.read_series([tmp_path / "other.csv"])
    write_log(tmp_path / "one_stage.csv", [[0, 0, 11, 1, 0.5], [0, 10, 11, 1, 0.4]])
    with pytest.raises(LctError, match="two curriculum stages"):
        fit_c.main([str(tmp_path / "one_stage.csv"), "--out", str(tmp_path / "o")])


def test_the_published_fitted_c_schedule_composes_and_instantiates(tmp_path):
    from train_utils import compose_cfg

    from lct.builders import build_objective, build_student

    cfg = compose_cfg(tmp_path, ["c_schedule=fitted_mnist", "trainer.max_steps=10"])
    student = build_student(cfg)
    c = build_objective(cfg, student, 10, (4, 8, 8)).c
    assert type(c).__name__ == "AdaptiveC" and c.slope == cfg.method.c.slope and c.offset == cfg.method.c.offset
    assert c.slope != -1.15  # the fitted constants, not the paper's
