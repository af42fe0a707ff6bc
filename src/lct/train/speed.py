"""The training fast path, switched from conf/trainer: torch.compile of the backbones, channels_last, and
flush-to-zero of denormal floats on the CPU.

bf16 autocast is Lightning's own switch (`trainer.precision: bf16-mixed`); the backbones keep the noise
embedding and the output head in fp32 under it (lct.nn), and the loss is computed from those fp32
outputs. `compile` compiles every `lct.nn.Backbone` in place (`nn.Module.compile`), so state-dict keys,
checkpoints and the EMA copies are unchanged; the preconditioning, loss, optimizer and EMA update stay eager.

`flush_denormal` treats denormal floats (|x| < 1.18e-38) as zero in CPU arithmetic (`torch.set_flush_denormal`,
x86 FTZ/DAZ). Weights of a branch whose gradient vanishes are driven towards zero by weight decay and end in the
denormal range, where every operation on them is many times slower: an iLCT run on the CPU had 14% of its weights
denormal at step 3,500 (its attention blocks among them) and trained 2.7x slower than at its start
(benchmarks/README.md, "CPU: denormal weights"). Their contribution to an activation is below fp32's resolution:
flushed, that run's losses were bit-identical and its steps 2.56x faster. GPU kernels are unaffected.
The flag is per thread, and an OpenMP worker inherits it only when created after it: `lct.train` sets it before
its first tensor operation (`set_flush_denormal`), and FastPath checks every intra-op thread when fitting starts
(`flushed_fraction`) and warns about a thread pool made before the flag.
"""

from __future__ import annotations

import logging

import lightning as L
import torch
from torch import nn

from lct.errors import LctError
from lct.nn import Backbone

log = logging.getLogger(__name__)

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")


def check_compile_mode(mode: str) -> None:
    """LctError unless `mode` is one of torch.compile's modes."""
    if mode not in COMPILE_MODES:
        raise LctError(
            f"trainer.compile_mode={mode!r} is not a torch.compile mode; "
            f"set it to one of {', '.join(COMPILE_MODES)} in conf/trainer or on the command line"
        )


def apply_fast_path(
    module: nn.Module, *, compile: bool = False, compile_mode: str = "default", channels_last: bool = False
) -> nn.Module:
    """Convert `module` (a LightningModule or a bare backbone) in place to channels_last and/or compile
    each backbone in it with `torch.compile(mode=compile_mode)`; returns `module`."""
    check_compile_mode(compile_mode)
    backbones = [m for m in module.modules() if isinstance(m, Backbone)]
    if (compile or channels_last) and not backbones:
        raise LctError(
            f"trainer.compile/channels_last found no lct.nn.Backbone in {type(module).__name__}; "
            f"derive the network from lct.nn.Backbone or set trainer.compile=false channels_last=false"
        )
    if channels_last:
        module.to(memory_format=torch.channels_last)  # 4-D weights; activations follow the conv weights
    if compile:
        for net in backbones:
            net.compile(mode=compile_mode)
    if compile or channels_last:
        log.info(
            "fast path: compile=%s (mode %s), channels_last=%s on %d backbone(s)",
            compile,
            compile_mode,
            channels_last,
            len(backbones),
        )
    return module


def set_flush_denormal(on: bool) -> bool:
    """Flush-to-zero of denormal floats on or off for this thread and the intra-op threads created after it;
    False when this CPU has no flush-to-zero (and `on` asked for it)."""
    return bool(torch.set_flush_denormal(on)) or not on


def flushed_fraction() -> float:
    """The fraction of a parallel elementwise op (every intra-op thread takes a share) that CPU arithmetic
    flushed to zero: 1.0 when every thread flushes denormals, 0.0 when none does, between when the OpenMP pool's
    threads were created before the flag was set (they keep their own). Bit patterns, not float compares: a
    flushing comparison would read the denormal input as zero too."""
    n = max(1 << 20, 32768 * torch.get_num_threads())  # at least one of ATen's 32,768-element grains a thread
    smallest = torch.ones(n, dtype=torch.int32).view(torch.float32)  # 1.4e-45, written without arithmetic
    return (smallest * 2.0).view(torch.int32).eq(0).double().mean().item()


class FastPath(L.Callback):
    """Applies `apply_fast_path` when fitting starts, before the module is moved to its device, and sets the
    process's flush-to-zero of denormal floats (`flush_denormal`)."""

    def __init__(
        self,
        compile: bool = False,
        compile_mode: str = "default",
        channels_last: bool = False,
        flush_denormal: bool = False,
    ):
        self.options = {"compile": compile, "compile_mode": compile_mode, "channels_last": channels_last}
        self.flush_denormal = bool(flush_denormal)
        check_compile_mode(compile_mode)  # fail when the trainer is built, not after the data is prepared

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            apply_fast_path(pl_module, **self.options)
            if not set_flush_denormal(self.flush_denormal):
                log.info("trainer.flush_denormal: this CPU has no flush-to-zero (torch.set_flush_denormal)")
            elif self.flush_denormal and (share := flushed_fraction()) < 1.0:
                log.warning(
                    "trainer.flush_denormal: only %.0f%% of a parallel op was flushed: the intra-op threads made "
                    "before the flag was set keep denormal floats (each thread has its own). Call "
                    "lct.train.speed.set_flush_denormal(True) before the process's first parallel tensor op, as "
                    "`python -m lct.train` does, or set torch.set_num_threads(1)",
                    100 * share,
                )

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        # CUDA graphs reuse their output memory from one replay to the next: one training step = one
        # generation (the student's forward/backward and the target's forward).
        if self.options["compile"] and self.options["compile_mode"] in CUDA_GRAPH_MODES:
            torch.compiler.cudagraph_mark_step_begin()


class Trainer(L.Trainer):
    """Lightning's Trainer with the fast-path switches of conf/trainer (`compile`, `compile_mode`,
    `channels_last`, `flush_denormal`) as keyword arguments; every other argument is Lightning's."""

    def __init__(
        self,
        *,
        compile: bool = False,
        compile_mode: str = "default",
        channels_last: bool = False,
        flush_denormal: bool = False,
        callbacks=None,
        **kwargs,
    ):
        callbacks = [callbacks] if isinstance(callbacks, L.Callback) else list(callbacks or [])
        fast = FastPath(compile, compile_mode, channels_last, flush_denormal)
        super().__init__(callbacks=[*callbacks, fast], **kwargs)
