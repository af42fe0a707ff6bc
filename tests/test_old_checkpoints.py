"""A checkpoint written by an earlier lct still samples, and gives the samples that lct gave then.

tests/fixtures/v0_38c6bc0.ckpt was trained by lct at commit 38c6bc0 (before the package layout of lct.cli / lct.io,
the kinds registry and the run records): `python -m lct.train experiment=slct_noot data.batch_size=8
trainer.max_steps=3 +backbone.model_channels=4 +backbone.num_blocks=1` on the built-in digits; v0_38c6bc0_samples.npz
holds what that commit's `python -m lct.sample CKPT --nfe 1|2 --num-samples 4` wrote (latents and decoded images).
"""

from pathlib import Path

import numpy as np
import pytest
from train_utils import sample_npz

FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.mark.parametrize("nfe", [1, 2])
def test_a_checkpoint_of_the_previous_version_samples_as_it_did(tmp_path, nfe):
    then = np.load(FIXTURES / "v0_38c6bc0_samples.npz")[f"nfe{nfe}"]
    now = sample_npz(FIXTURES / "v0_38c6bc0.ckpt", nfe, tmp_path / "s", num_samples=4)
    # Equal up to float32 rounding (another CPU's kernels may round the last bits differently).
    np.testing.assert_allclose(now["latents"], then, rtol=1e-5, atol=1e-5)
