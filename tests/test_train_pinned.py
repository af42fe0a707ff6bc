"""Behaviour pin: the loss terms of a few seeded training steps, recorded before the objective refactor.

Any change to the per-step method (grid, index and noise draws, coupling, c, loss terms) moves these
numbers; a refactor must leave them bit-for-bit (to float32 round-off) where they are.
"""

import lightning as L
import pytest
import torch
from train_utils import compose_cfg

KEYS = ("train/loss", "train/consistency", "train/diffusion", "train/c", "train/N")

# Recorded with the code at main 390b65b (synthetic data, unet_tiny, batch 16, 4 steps, seed 0).
PINNED = {  # case: ([[loss, consistency, diffusion, c, N] per step], sum of the student's parameters)
    "ilct": (
        [
            [0.5056420564651489, 0.5056420564651489, 0.0, 0.00863999966531992, 11.0],
            [0.554561972618103, 0.554561972618103, 0.0, 0.00863999966531992, 21.0],
            [0.3979645073413849, 0.3979645073413849, 0.0, 0.00863999966531992, 41.0],
            [0.2797132730484009, 0.2797132730484009, 0.0, 0.00863999966531992, 81.0],
        ],
        3147.415885332309,
    ),
    "online_ema": (
        [
            [25.785137176513672, 20.421730041503906, 1.0726813077926636, 0.00863999966531992, 11.0],
            [5.954916954040527, 0.6818968057632446, 1.0546040534973145, 0.193374365568161, 21.0],
            [5.399410247802734, 0.3033226728439331, 1.0192174911499023, 0.1923254132270813, 41.0],
            [5.032567024230957, 0.12516365945339203, 0.9814806580543518, 0.19087530672550201, 81.0],
        ],
        3147.317958865151,
    ),
    "sinkhorn_uniform": (
        [
            [16.986452102661133, 12.046412467956543, 0.9880080223083496, 0.00863999966531992, 11.0],
            [17.242996215820312, 12.276066780090332, 0.9933857321739197, 0.00863999966531992, 21.0],
            [15.825572967529297, 10.577619552612305, 1.0495907068252563, 0.00863999966531992, 41.0],
            [16.728862762451172, 11.763495445251465, 0.9930732846260071, 0.00863999966531992, 81.0],
        ],
        3147.5088630622954,
    ),
    "slct": (
        [
            [25.51710319519043, 20.348825454711914, 1.0336556434631348, 0.00863999966531992, 11.0],
            [25.87293815612793, 21.15945053100586, 0.9426975250244141, 0.01363531593233347, 21.0],
            [42.02486038208008, 37.50420379638672, 0.9041309952735901, 0.006144417449831963, 41.0],
            [89.35910034179688, 84.18160247802734, 1.0355002880096436, 0.0027688294649124146, 81.0],
        ],
        59115.680485383695,
    ),
}


class _Record(L.Callback):
    def __init__(self):
        self.rows = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        m = trainer.callback_metrics
        self.rows.append([float(m[k]) for k in KEYS])


def run_steps(tmp_path, experiment, extra=()):
    from lct.train.run import build

    cfg = compose_cfg(
        tmp_path,
        [
            f"experiment={experiment}",
            "trainer.max_steps=4",
            "log_every=1",
            "data.batch_size=16",
            "~callbacks.checkpoint",
            "~callbacks.final_checkpoint",
            *extra,
        ],
    )
    module, dm, trainer, _ = build(cfg)
    rec = _Record()
    trainer.callbacks.append(rec)
    trainer.fit(module, datamodule=dm)
    checksum = float(sum(p.double().sum() for p in module.student.parameters()))
    return rec.rows, checksum


CASES = {
    "slct": ("slct", ()),
    "ilct": ("ilct", ()),
    "online_ema": ("cauchy_diff", ("c_schedule=online", "teacher=ema")),
    "sinkhorn_uniform": ("cauchy_ot", ("coupling=sinkhorn", "noise_sampler=uniform")),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_seeded_steps_match_the_recorded_loss_terms(tmp_path, case):
    rows, checksum = run_steps(tmp_path, *CASES[case])
    want_rows, want_sum = PINNED[case]
    torch.testing.assert_close(
        torch.tensor(rows, dtype=torch.float64), torch.tensor(want_rows, dtype=torch.float64), rtol=1e-5, atol=1e-7
    )
    assert checksum == pytest.approx(want_sum, rel=1e-6)
