"""The fast path's switches: trainer configs, apply_fast_path, and a compiled run that matches eager."""

import pytest
import torch
from hydra.utils import instantiate
from train_utils import compose_cfg, fit

from lct.errors import LctError
from lct.nn import build_backbone
from lct.train.speed import FastPath, apply_fast_path


def test_cpu_configs_have_the_fast_path_off_gpu_configs_on(tmp_path):
    cpu = compose_cfg(tmp_path).trainer
    assert not cpu.compile and not cpu.channels_last and cpu.precision == "32-true"
    for name in ("gpu", "gpu_bf16", "ddp"):
        gpu = compose_cfg(tmp_path, [f"trainer={name}"]).trainer
        assert gpu.compile and gpu.precision == "bf16-mixed", name
    fp32 = compose_cfg(tmp_path, ["trainer=gpu_fp32"]).trainer
    assert not fp32.compile and fp32.precision == "32-true"


def test_trainer_config_builds_a_trainer_with_the_fast_path_callback(tmp_path):
    cfg = compose_cfg(tmp_path, ["trainer.channels_last=true"])
    trainer = instantiate(cfg.trainer, callbacks=[], logger=False)
    fast = [c for c in trainer.callbacks if isinstance(c, FastPath)]
    assert len(fast) == 1 and fast[0].options == {"compile": False, "compile_mode": "default", "channels_last": True}
    with pytest.raises(Exception, match="trainer.compile_mode") as err:  # Hydra wraps the LctError
        instantiate(compose_cfg(tmp_path, ["trainer.compile_mode=fastest"]).trainer, logger=False)
    assert isinstance(err.value, LctError) or isinstance(err.value.__cause__, LctError)


def test_flush_denormal_is_on_in_every_trainer_config_and_set_when_fitting_starts(tmp_path):
    """Denormal weights (decayed towards zero with a vanishing gradient) slow every CPU op that reads them;
    the trainer's FastPath makes CPU arithmetic treat them as zero (benchmarks/README.md, "CPU: denormal weights")."""
    for name in ("cpu", "gpu", "gpu_fp32", "ddp_cpu"):
        assert compose_cfg(tmp_path, [f"trainer={name}"]).trainer.flush_denormal is True, name
    torch.set_flush_denormal(False)  # process-wide: an earlier fit in this process may have set it
    tiny = torch.tensor([1e-39])  # below float32's smallest normal, 1.18e-38 (made while not flushing)
    assert tiny.item() != 0.0
    try:
        for flag in (False, True):
            trainer = instantiate(compose_cfg(tmp_path, [f"trainer.flush_denormal={flag}"]).trainer, logger=False)
            fast = next(c for c in trainer.callbacks if isinstance(c, FastPath))
            fast.setup(trainer, torch.nn.Linear(2, 2), "validate")  # not fitting: the process is left as it is
            fast.setup(trainer, torch.nn.Linear(2, 2), "fit")
            assert ((tiny * 1.0).item() == 0.0) is flag
    finally:
        torch.set_flush_denormal(False)


FLUSH_PROBE = """
import logging, sys
import torch
sys.path.insert(0, {tests!r})
from train_utils import compose_cfg
import lct.train.run as run
import lct.train.speed as speed
torch.set_num_threads(2)
torch.set_flush_denormal(False)
if {early!r} == "off":
    run.set_flush_denormal = lambda on: True  # as before: the flag was set only when fitting started
seen, probe = [], speed.flushed_fraction
speed.flushed_fraction = lambda: seen.append(probe()) or seen[-1]
run.train(compose_cfg({tmp!r}, ["trainer.max_steps=1"]))
print("FLUSHED", seen)
"""


def test_flush_denormal_reaches_every_intra_op_thread_of_a_training_run(tmp_path):
    """The flag is per thread and an OpenMP worker inherits it only when created after it: set when fitting
    starts, half of a two-thread run's arithmetic kept denormals (its data setup had made the pool); lct.train
    sets it first, and FastPath measures every thread and warns otherwise."""
    import subprocess
    import sys
    from pathlib import Path

    if not torch.set_flush_denormal(True):
        pytest.skip("this CPU has no flush-to-zero")  # x86 has it (FTZ/DAZ); the flag is a no-op elsewhere
    torch.set_flush_denormal(False)
    tests = str(Path(__file__).parent)
    for early, flushed in (("on", "[1.0]"), ("off", "[0.5]")):
        script = FLUSH_PROBE.format(tests=tests, early=early, tmp=str(tmp_path / early))
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        assert f"FLUSHED {flushed}" in out.stdout, (early, out.stdout[-500:])
        assert ("only 50% of a parallel op was flushed" in out.stderr) is (early == "off"), out.stderr[-2000:]


def test_apply_fast_path_keeps_state_dict_and_outputs():
    torch.manual_seed(0)
    net = build_backbone("unet_tiny", in_channels=4, resolution=8)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    x, c = torch.randn(2, 4, 8, 8), torch.randn(2) * 500
    ref, keys = net(x, c), list(net.state_dict())
    apply_fast_path(net, compile=True, channels_last=True)  # compilation itself is lazy: nothing runs here
    assert list(net.state_dict()) == keys and net._compiled_call_impl is not None
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in net.parameters() if p.ndim == 4)
    net._compiled_call_impl = None  # eager again: channels_last alone
    torch.testing.assert_close(net(x, c), ref, atol=1e-5, rtol=1e-5)


def test_apply_fast_path_without_a_backbone_says_so():
    with pytest.raises(LctError, match="lct.nn.Backbone"):
        apply_fast_path(torch.nn.Linear(2, 2), compile=True)
    assert isinstance(apply_fast_path(torch.nn.Linear(2, 2)), torch.nn.Linear)  # all off: nothing to do


def test_channels_last_run_matches_the_default_layout(tmp_path):
    over = ["experiment=slct", "trainer.max_steps=3", "data.batch_size=16"]
    ref = fit(compose_cfg(tmp_path / "a", over)).state_dict()
    module = fit(compose_cfg(tmp_path / "b", [*over, "trainer.channels_last=true"]))
    conv = module.student.backbone.out_conv.weight
    assert conv.is_contiguous(memory_format=torch.channels_last)
    for k, v in module.state_dict().items():
        torch.testing.assert_close(v, ref[k], atol=1e-5, rtol=1e-4, msg=k)


@pytest.mark.slow
def test_compiled_run_matches_eager(tmp_path):
    # torch.compile on the CPU (inductor's C++ backend): minutes of compilation for unet_tiny.
    over = ["experiment=slct", "trainer.max_steps=3", "data.batch_size=16"]
    ref = fit(compose_cfg(tmp_path / "a", over)).state_dict()
    module = fit(compose_cfg(tmp_path / "b", [*over, "trainer.compile=true"]))
    for k, v in module.state_dict().items():
        torch.testing.assert_close(v, ref[k], atol=1e-4, rtol=1e-3, msg=k)
