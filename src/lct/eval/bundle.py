"""Loading a checkpoint for sampling (via lct.io.checkpoint) and checking it fits the latents it will decode."""

from __future__ import annotations

import torch


class CheckpointMismatch(ValueError):
    """The checkpoint's model does not fit the latent shape of its codec/data."""


def load_bundle(path: str, ema: bool = True, device: str | torch.device = "cpu"):
    """Bundle(model, codec, cfg, latent_shape) from lct.io.checkpoint.load_for_sampling, on `device` and checked."""
    try:
        from lct.io.checkpoint import load_for_sampling
    except ImportError as err:  # the training side is not installed in this checkout
        raise RuntimeError(f"cannot load checkpoints: lct.io.checkpoint is unavailable ({err})") from err
    bundle = load_for_sampling(path, ema=ema, map_location="cpu")
    bundle.model.to(device).eval()
    if hasattr(bundle.codec, "to"):
        bundle.codec.to(device)
    check_latent_shape(bundle.model, bundle.latent_shape, bundle.codec, device, sigma_max=bundle.noise.sigma_max)
    return bundle


def codec_latent_shape(codec) -> tuple[int, ...] | None:
    """(C, H, W) the codec decodes, when it says: `latent_shape`, else the shape of its per-element mean."""
    shape = getattr(codec, "latent_shape", None)
    if shape is None:
        for name in ("mu", "mean"):
            t = getattr(codec, name, None)
            if torch.is_tensor(t) and t.ndim == 3:
                shape = t.shape
                break
    return tuple(int(s) for s in shape) if shape is not None else None


@torch.no_grad()
def check_latent_shape(
    model, latent_shape, codec=None, device: str | torch.device = "cpu", *, sigma_max: float
) -> None:
    """Raise CheckpointMismatch naming both shapes if the model (probed at the run's sigma_max) or the codec
    disagree with latent_shape."""
    latent_shape = tuple(int(s) for s in latent_shape)
    decoded = codec_latent_shape(codec) if codec is not None else None
    if decoded is not None and decoded != latent_shape:
        raise CheckpointMismatch(
            f"latent shape mismatch: the checkpoint's model makes latents {latent_shape} "
            f"but the codec/data decodes latents {decoded}"
        )
    probe = torch.zeros((1, *latent_shape), device=device)
    try:
        out = model(probe, sigma_max)
    except (RuntimeError, ValueError) as err:
        raise CheckpointMismatch(
            f"the checkpoint's model ({type(getattr(model, 'backbone', model)).__name__}) "
            f"rejects latents of shape {latent_shape}: {err}"
        ) from err
    if tuple(out.shape[1:]) != latent_shape:
        raise CheckpointMismatch(f"the checkpoint's model maps latents {latent_shape} to {tuple(out.shape[1:])}")
