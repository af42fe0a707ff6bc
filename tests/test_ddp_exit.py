"""DDP ranks exit cleanly: lct.train destroys the gloo process group at exit (ReleaseProcessGroup).

A gloo group alive when its process exits aborts that process in a fraction of runs; under ddp_spawn a
finished run then fails as a crashed rank (benchmarks/ddp_exit.py measures the rate)."""

import atexit
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch.distributed as dist
from train_utils import compose_cfg

from lct.train.callbacks import ReleaseProcessGroup, destroy_process_group


def test_registers_once_per_process_and_only_for_several_ranks(monkeypatch):
    registered = []
    monkeypatch.setattr(atexit, "register", registered.append)
    monkeypatch.setattr(ReleaseProcessGroup, "_registered", False)
    ReleaseProcessGroup().setup(SimpleNamespace(world_size=1), None, "fit")
    assert registered == []
    for _ in range(2):  # a second fit in the same rank adds nothing
        ReleaseProcessGroup().setup(SimpleNamespace(world_size=2), None, "fit")
    assert registered == [destroy_process_group]


def test_destroy_releases_the_default_group_and_is_a_no_op_without_one(tmp_path):
    destroy_process_group()  # none yet: nothing to do, no error
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    assert dist.is_initialized()
    destroy_process_group()
    assert not dist.is_initialized()


def test_lct_train_trainer_carries_it(tmp_path):
    from lct.train.run import build

    _, _, trainer, _ = build(compose_cfg(tmp_path, ["trainer=ddp_cpu", "trainer.max_steps=1"]))
    assert any(isinstance(c, ReleaseProcessGroup) for c in trainer.callbacks)


@pytest.mark.slow
def test_two_rank_gloo_runs_never_abort_at_exit():
    """40 two-rank spawns with it: none aborts (without it, 9 of 60 did on the 2-core host; P(0/40) ~ 1e-3)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from ddp_exit import count_aborts

    assert count_aborts(40, release=True) == 0
