"""The built-in headline FID's reference: the study's fixed 1,000 real digits, one function away."""

import numpy as np
import pytest

from lct.data.builtin import reference_digits
from lct.data.sources import load_mnist
from lct.errors import LctError


def test_reference_digits_are_the_studys_seed0_permutation_of_the_wheels_digits():
    ref = reference_digits(1000)
    images, labels = load_mnist()
    order = np.random.default_rng(0).permutation(len(images))  # how experiments/ablation/sweeps.sh built its file
    assert ref.dtype == np.uint8 and ref.shape == (1000, 1, 32, 32)
    np.testing.assert_array_equal(ref, images[order[:1000]][:, None])
    assert np.bincount(labels[order[:1000]], minlength=10).min() >= 80  # every digit class is there
    np.testing.assert_array_equal(reference_digits(10), ref[:10])  # a shorter set is a prefix


@pytest.mark.parametrize("num", [0, 5001])
def test_reference_digits_outside_the_set_is_one_line(num):
    with pytest.raises(LctError, match=r"builtin:mnist.*5000"):
        reference_digits(num)
