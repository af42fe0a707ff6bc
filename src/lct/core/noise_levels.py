"""The noise levels of the method: sigma_min, sigma_max, rho, sigma_data and the 2-NFE sigma_mid.

The run's config (`method.sigma`) is the one source at run time; it reaches preconditioning, data
scaling, the training grid, sampling and evaluation through this object, and checkpoints store it.
The defaults below are the paper's (Karras et al. 2022 grid, sigma_data = 0.5 on normalized latents) and
define `PAPER`; code that runs with a config or a checkpoint takes its levels from there, and the functions
that need sigma_data or a noise level take it as an argument, never the paper's by default.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch


@dataclass(frozen=True)
class NoiseLevels:
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    rho: float = 7.0
    sigma_data: float = 0.5
    # 2-NFE intermediate level: index `mid_index` of the `mid_grid`-point Karras grid (paper: best at
    # 420-440 of 641), unless `sigma_mid` is given.
    mid_index: int = 430
    mid_grid: int = 641
    sigma_mid: float | None = None

    def __post_init__(self):
        from lct.errors import LctError

        if not 0 < self.sigma_min < self.sigma_max or self.sigma_data <= 0 or self.rho <= 0:
            raise LctError(f"method.sigma needs 0 < min < max, data > 0 and rho > 0, got {self}")
        if not 0 <= self.mid_index < self.mid_grid:
            raise LctError(f"method.sigma.mid_index must be in [0, {self.mid_grid}), got {self.mid_index}")
        if self.sigma_mid is None:
            object.__setattr__(self, "sigma_mid", self.grid_sigma(self.mid_index, self.mid_grid))

    def karras(self, n: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """The n-point Karras grid sigma_0 = sigma_max > ... > sigma_{n-1} = sigma_min."""
        return karras_sigmas(n, self.sigma_min, self.sigma_max, self.rho, dtype)

    def grid_sigma(self, index: int, n: int) -> float:
        """sigma at `index` of the n-point grid."""
        from lct.errors import LctError

        if not 0 <= index < n:
            raise LctError(f"sigma_mid index must be in [0, {n}), got {index}")
        return float(self.karras(n)[index])

    def nfe_sigmas(self, nfe: int, sigma_mid: float | None = None) -> list[float]:
        """The sampling sigmas for 1 NFE ([sigma_max]) or 2 NFE ([sigma_max, sigma_mid])."""
        if nfe == 1:
            return [self.sigma_max]
        if nfe == 2:
            return [self.sigma_max, float(self.sigma_mid if sigma_mid is None else sigma_mid)]
        from lct.errors import LctError

        raise LctError(f"nfe must be 1 or 2 (give an explicit sigma list for more), got {nfe}")

    @classmethod
    def from_config(cls, sigma) -> NoiseLevels:
        """From the run's `method.sigma` {min, max, rho, data, mid_index, mid_grid, mid}; min, max, rho and data
        must be there (mid_index and mid_grid: configs written before they existed used the paper's)."""
        s = dict(sigma)
        missing = [key for key in ("min", "max", "rho", "data") if s.get(key) is None]
        if missing:
            from lct.errors import LctError

            raise LctError(
                f"method.sigma.{missing[0]} is not set (method.sigma needs min, max, rho and data); set "
                f"method.sigma.{missing[0]}=... (conf/config.yaml has the paper's values)"
            )
        return cls(
            sigma_min=float(s["min"]),
            sigma_max=float(s["max"]),
            rho=float(s["rho"]),
            sigma_data=float(s["data"]),
            mid_index=int(s.get("mid_index", cls.mid_index)),
            mid_grid=int(s.get("mid_grid", cls.mid_grid)),
            sigma_mid=None if s.get("mid") is None else float(s["mid"]),
        )

    def state_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_state_dict(cls, state: dict) -> NoiseLevels:
        return cls(**state)


# ----------------------------------------------------------------------------
# Karras et al. 2022 eq. 5: sigma_i, i = 0..N-1, descending (sigma_0 = sigma_max).


def karras_sigmas(
    n: int,
    sigma_min: float = NoiseLevels.sigma_min,
    sigma_max: float = NoiseLevels.sigma_max,
    rho: float = NoiseLevels.rho,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """The N-point Karras grid from sigma_max down to sigma_min."""
    n = int(n)
    if n < 2:
        raise ValueError(f"n (number of grid points) must be >= 2, got {n}")
    if not 0 < sigma_min < sigma_max:
        raise ValueError(f"need 0 < sigma_min < sigma_max, got sigma_min={sigma_min}, sigma_max={sigma_max}")
    ramp = torch.arange(n, dtype=torch.float64) / (n - 1)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return ((hi + ramp * (lo - hi)) ** rho).to(dtype)


PAPER = NoiseLevels()
