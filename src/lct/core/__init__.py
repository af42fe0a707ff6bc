"""lct.core: the paper's math in pure PyTorch (no Lightning, Hydra or torch.distributed)."""
from ._checks import NonFiniteError
from .c_schedules import AdaptiveC, ConstantC, OnlineC, adaptive_c, ict_default_c, make_c_schedule
from .diagnostics import residual_stats
from .coupling import ot_pair, ot_permutation, sq_euclidean_cost
from .ema import ema_decay, ema_update
from .losses import LossTerms, consistency_loss, diffusion_loss, diffusion_mask, lct_loss, td_pair
from .metrics import METRICS, robust_metric
from .precond import ConsistencyFunction, Preconditioning, boundary_scalings, c_noise
from .sampling import grid_sigma, multistep_sample, onestep_sample, twostep_sample
from .schedules import (P_MEAN, P_STD, RHO, SIGMA_MAX, SIGMA_MIN, ict_weight, karras_sigmas,
                        lognormal_index_probs, num_scales, sample_indices, uniform_index_probs)
from .precond import SIGMA_DATA

__all__ = [name for name in dir() if not name.startswith("_")]
