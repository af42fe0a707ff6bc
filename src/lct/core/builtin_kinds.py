"""The registry entries of the two kinds lct started with (lct.core.kinds): the paper's consistency model
and the EDM diffusion baseline (experiment=edm)."""

from __future__ import annotations

from .edm import Denoiser, heun_sigmas, heun_solve, heun_steps_for_nfe
from .kinds import BuildContext, Kind, register_kind
from .noise_levels import NoiseLevels
from .objective import ConsistencyObjective, EDMObjective
from .precond import ConsistencyFunction
from .sampling import multistep_sample


def consistency_objective(student, ctx: BuildContext) -> ConsistencyObjective:
    """The paper's per-step method from `method.*`; the c schedule gets D = C*H*W, the teacher the student."""
    teacher = ctx.part("teacher")
    teacher.bind(student)
    return ConsistencyObjective(
        levels=ctx.levels,
        metric=ctx.part("metric"),
        c=ctx.part("c", _partial_=True)(dim=ctx.dim, total_steps=ctx.total_steps),
        coupling=ctx.part("coupling"),
        noise=ctx.part("noise"),
        teacher=teacher,
        diffusion=ctx.part("diffusion"),
        curriculum=ctx.part("curriculum"),
        total_steps=ctx.total_steps,
        seed=ctx.seed,
    )


def edm_objective(student, ctx: BuildContext) -> EDMObjective:
    """EDM's objective from `method.edm` (P_mean, P_std)."""
    edm = ctx.options("edm", ("p_mean", "p_std"), "conf/experiment/edm.yaml")
    return EDMObjective(ctx.levels, **edm, seed=ctx.seed)


def consistency_sample(model, noise, sigmas, levels: NoiseLevels, generator=None):
    """Song et al. 2023, Alg. 1 on the sigma list (1 NFE: [sigma_max]; 2 NFE: [sigma_max, sigma_mid])."""
    return multistep_sample(model, noise, sigmas, levels.sigma_min, generator)


def heun_times(levels: NoiseLevels, nfe: int, sigma_mid: float | None = None) -> list[float]:
    """The Heun grid t_0 = sigma_max > ... > t_N = 0 with 2N - 1 = nfe (LctError otherwise)."""
    return heun_sigmas(heun_steps_for_nfe(nfe), levels.sigma_min, levels.sigma_max, levels.rho).tolist()


def _diffusion_student(backbone, levels: NoiseLevels) -> Denoiser:
    return Denoiser(backbone, levels.sigma_data)


def heun_sample_times(model, noise, sigmas, levels, generator=None):
    """Heun's deterministic sampler (no re-noising draws: the generator is unused)."""
    return heun_solve(model, noise, sigmas)


def _consistency_times(levels: NoiseLevels, nfe: int, sigma_mid: float | None = None) -> list[float]:
    return levels.nfe_sigmas(nfe, sigma_mid)


CONSISTENCY = register_kind(
    Kind(
        name="consistency",
        student=ConsistencyFunction,
        objective=consistency_objective,
        sample=consistency_sample,
        nfe_times=_consistency_times,
        default_nfe=(1, 2),  # the paper's 1 and 2 NFE
        summary="the paper's method, the default",
    )
)
DIFFUSION = register_kind(
    Kind(
        name="diffusion",
        student=_diffusion_student,
        objective=edm_objective,
        sample=heun_sample_times,
        nfe_times=heun_times,
        default_nfe=(1, 35),  # EDM's 35 NFE = 18 Heun steps (Karras et al. 2022)
        summary="the EDM baseline: experiment=edm",
    )
)
