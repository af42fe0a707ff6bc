"""lct.core: the paper's math in pure PyTorch (no Lightning, Hydra or torch.distributed)."""

from . import builtin_kinds, meanflow, scm  # noqa: F401  (each registers its kinds: lct.core.kinds)
from ._checks import NonFiniteError
from .c_schedules import AdaptiveC, ConstantC, OnlineC, adaptive_c, ict_default_c
from .coupling import MinibatchOT, NoCoupling, ot_pair, ot_permutation, pair_cost_reduction, sq_euclidean_cost
from .diagnostics import residual_stats
from .edm import Denoiser
from .ema import ema_decay, ema_update
from .kinds import BuildContext, Kind, get_kind, register_kind
from .losses import LossTerms, LowNoiseDiffusion, consistency_loss, diffusion_loss, diffusion_mask, lct_loss, td_pair
from .metrics import L2, Cauchy, GemanMcClure, PseudoHuber
from .noise_levels import PAPER, NoiseLevels, karras_sigmas
from .objective import ConsistencyObjective, DeviceGenerator, EDMObjective, StepOutput
from .precond import ConsistencyFunction, boundary_scalings, c_noise
from .protocols import Coupling, CSchedule, IndexSampler, RobustMetric, Teacher  # and protocols.Curriculum
from .sampling import DEFAULT_NFE, KINDS, multistep_sample, nfe_sigmas, onestep_sample, sample, twostep_sample
from .schedules import (
    P_MEAN,
    P_STD,
    Curriculum,
    LogNormalIndices,
    UniformIndices,
    ict_weight,
    lognormal_index_probs,
    lr_factor,
    num_scales,
    sample_indices,
    uniform_index_probs,
)
from .teacher import EMATeacher, StopGrad

__all__ = [name for name in dir() if not name.startswith("_")]
