"""Loading a diffusers AutoencoderKL by hub id, local folder or the shipped project VAE, and fingerprinting it."""
from __future__ import annotations

import hashlib
import json
import logging
from importlib import resources
from pathlib import Path

import torch

from lct.errors import LctError

log = logging.getLogger(__name__)

# The project's own VAE, trained by `python -m lct.autoencoder` on built-in MNIST (src/lct/assets).
BUILTIN_VAES = {"mnist": "vae_mnist"}


def builtin_vae_path(name: str = "mnist") -> Path:
    """Folder of a VAE shipped inside the package (save_pretrained layout)."""
    return Path(str(resources.files("lct") / "assets" / BUILTIN_VAES[name]))


def resolve_vae_ref(ref: str) -> str:
    """`builtin:mnist` -> shipped folder; a local folder or a hub id is returned as is."""
    if ref.startswith("builtin:"):
        return str(builtin_vae_path(ref.split(":", 1)[1]))
    return ref


def load_vae(ref: str, device: str | torch.device = "cpu"):
    """AutoencoderKL in eval mode with gradients off, from a hub id, local folder or `builtin:<name>`."""
    from diffusers import AutoencoderKL

    path = resolve_vae_ref(ref)
    try:
        # low_cpu_mem_usage=False: the fast path needs `accelerate`, which is not a dependency.
        vae = AutoencoderKL.from_pretrained(path, low_cpu_mem_usage=False)
    except OSError as err:
        raise LctError(
            f"could not load the VAE {ref!r} ({path}): {err}. Give a local save_pretrained folder, builtin:mnist, "
            "or a hub id with network access (HF_HUB_OFFLINE=1 blocks downloads; the cached copy is used if present)"
        ) from err
    vae.requires_grad_(False)
    return vae.eval().to(device)


def config_hash(vae) -> str:
    """sha256 of the architecture config, without bookkeeping keys that vary between saves."""
    config = {k: v for k, v in dict(vae.config).items() if not k.startswith("_")}
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def weights_fingerprint(vae) -> str:
    """sha256 of the tensors at both ends of the VAE: tells apart VAEs that share a config
    (sd-vae-ft-ema and sd-vae-ft-mse do) without hashing every weight."""
    digest = hashlib.sha256()
    for name, tensor in sorted(vae.state_dict().items()):
        if name.startswith(("quant_conv", "post_quant_conv", "encoder.conv_in", "decoder.conv_out")):
            digest.update(name.encode())
            digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def describe_vae(vae, ref: str) -> dict:
    """The VAE block of the latent metadata."""
    latent_channels = int(vae.config.latent_channels)
    downsample = 2 ** (len(vae.config.block_out_channels) - 1)
    return {
        "ref": ref,
        "config_hash": config_hash(vae),
        "weights_fingerprint": weights_fingerprint(vae),
        # Kept for reference only: latents are stored in the VAE's native scale and the per-element
        # mu/s normalization makes this factor cancel.
        "scaling_factor": float(vae.config.scaling_factor),
        "in_channels": int(vae.config.in_channels),
        "latent_channels": latent_channels,
        "downsample": downsample,
    }


def save_tiny_vae(path, in_channels: int = 3, seed: int = 0) -> str:
    """A randomly initialized 2x-downsampling AutoencoderKL saved to `path`: for tests and smoke runs
    of the pipeline where the reconstruction quality does not matter."""
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    vae = AutoencoderKL(in_channels=in_channels, out_channels=in_channels, latent_channels=4,
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        block_out_channels=(8, 8), layers_per_block=1, norm_num_groups=4, sample_size=16)
    vae.save_pretrained(path)
    return str(path)
