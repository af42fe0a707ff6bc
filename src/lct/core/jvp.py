"""Forward-mode derivatives through a backbone (sCM's and MeanFlow's tangents): torch.func.jvp with the
attention kernels that support forward AD.

torch's fused scaled_dot_product_attention kernels (flash on CPU and CUDA, memory-efficient on CUDA) have
no forward-AD formula; its math kernel is built from differentiable ops, so under `jvp` every attention
call of lct's backbones (lct.nn: UNet and DiT) runs the math kernel. The primal output is the same
function (to rounding); only the kernel differs.
"""

from __future__ import annotations

import torch

try:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    def math_attention():
        """A context under which scaled_dot_product_attention runs its math kernel."""
        return sdpa_kernel([SDPBackend.MATH])

except ImportError:  # torch < 2.3 (pyproject allows torch >= 2.1): the older switch of the same kernels

    def math_attention():
        """A context under which scaled_dot_product_attention runs its math kernel."""
        return torch.backends.cuda.sdp_kernel(enable_flash=False, enable_math=True, enable_mem_efficient=False)


def jvp(fn, primals: tuple, tangents: tuple) -> tuple:
    """(fn(*primals), d/de fn(primals + e tangents) at e = 0) through torch.func.jvp, with math attention, in the
    primals' precision: under autocast (bf16-mixed) the forward-mode duals meet bf16 weights and the convolutions
    refuse them, so autocast is off inside (the tangent is a training target: fp32, as the losses)."""
    device = next((p.device.type for p in primals if isinstance(p, torch.Tensor)), "cpu")
    with math_attention(), torch.autocast(device_type=device, enabled=False):
        return torch.func.jvp(fn, tuple(primals), tuple(tangents))
