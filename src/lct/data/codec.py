"""LatentCodec: owns mu, s and the VAE, and maps between training x0, VAE latents z and images."""
from __future__ import annotations

import os
import numpy as np
import torch


from lct.data.shards import METADATA, LatentDataError, load_stats, read_metadata
from lct.data.vae import load_vae, weights_fingerprint



class LatentCodec:
    """x0 = sigma_data (z - mu) / s and back (per-element std sigma_data); `decode` runs the VAE (loaded on
    first use) to images in [-1, 1]."""

    def __init__(self, mean, std, vae_ref: str, vae_weights: str | None = None,
                 image_channels: int | None = None, image_size: int | None = None,
                 decode_batch_size: int = 64, *, sigma_data: float):
        self.mean = torch.as_tensor(np.asarray(mean), dtype=torch.float32)  # (C, H, W)
        self.std = torch.as_tensor(np.asarray(std), dtype=torch.float32)    # (C, H, W)
        self.vae_ref, self.vae_weights = vae_ref, vae_weights
        self.image_channels, self.image_size = image_channels, image_size
        self.decode_batch_size, self.sigma_data = decode_batch_size, float(sigma_data)
        self.device = torch.device("cpu")
        self._vae = None

    @classmethod
    def from_root(cls, root: str | os.PathLike, vae: str | None = None, *, sigma_data: float,
                  **kwargs) -> "LatentCodec":
        """Codec of a latent root at the run's sigma_data; `vae` overrides the recorded VAE path (e.g. the same
        hub id cached elsewhere), and its weights are still checked against the ones that encoded the latents."""
        meta = read_metadata(root)
        mean, std = load_stats(root, meta)
        return cls(mean, std, vae or meta["vae"]["ref"], meta["vae"]["weights_fingerprint"],
                   meta["image"]["channels"], meta["image"]["size"], sigma_data=sigma_data, **kwargs)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        return tuple(self.mean.shape)

    def to(self, device) -> "LatentCodec":
        self.device = torch.device(device)
        self.mean, self.std = self.mean.to(self.device), self.std.to(self.device)
        if self._vae is not None:
            self._vae.to(self.device)
        return self

    def normalize(self, z: torch.Tensor) -> torch.Tensor:
        """VAE latent z (B, C, H, W) -> training x0."""
        return self.sigma_data * (z - self.mean.to(z)) / self.std.to(z)

    def denormalize(self, x0: torch.Tensor) -> torch.Tensor:
        """Training x0 -> VAE latent z."""
        return x0 * self.std.to(x0) / self.sigma_data + self.mean.to(x0)

    @property
    def vae(self):
        if self._vae is None:
            if not self.vae_ref:
                raise LatentDataError("these latents record no VAE to decode with; pass vae=<hub id or "
                                      "folder> to LatentCodec.from_root (or data.vae=... in the config)")
            vae = load_vae(self.vae_ref, self.device)
            if self.vae_weights is not None and weights_fingerprint(vae) != self.vae_weights:
                raise LatentDataError(
                    f"VAE {self.vae_ref!r} is not the one that encoded these latents (weights fingerprint "
                    f"{weights_fingerprint(vae)} != {self.vae_weights} in {METADATA}); decode with the "
                    "recorded VAE, or re-encode the images with this one (python -m lct.encode)"
                )
            self._vae = vae
        return self._vae

    @torch.no_grad()
    def decode(self, x0: torch.Tensor) -> torch.Tensor:
        """x0 (B, C, H, W) -> images (B, image_channels, H*f, W*f) in [-1, 1], decoded in batches."""
        vae = self.vae
        out = []
        for chunk in x0.split(self.decode_batch_size):
            z = self.denormalize(chunk.to(self.device, torch.float32))
            out.append(vae.decode(z).sample.clamp(-1, 1))
        return torch.cat(out).to(x0.device)

    @torch.no_grad()
    def encode(self, images: torch.Tensor, sample: bool = False) -> torch.Tensor:
        """Images in [-1, 1] -> x0 (posterior mean unless `sample`); handy for round-trip checks."""
        posterior = self.vae.encode(images.to(self.device, torch.float32)).latent_dist
        z = posterior.sample() if sample else posterior.mean
        return self.normalize(z).to(images.device)

    def state_dict(self) -> dict:
        """Everything needed to rebuild the codec without the latent root (e.g. inside a checkpoint)."""
        return {"mean": self.mean.cpu(), "std": self.std.cpu(), "vae_ref": self.vae_ref,
                "vae_weights": self.vae_weights, "image_channels": self.image_channels,
                "image_size": self.image_size}

    @classmethod
    def from_state_dict(cls, state: dict, **kwargs) -> "LatentCodec":
        return cls(state["mean"], state["std"], state["vae_ref"], state["vae_weights"],
                   state["image_channels"], state["image_size"], **kwargs)

    def __repr__(self) -> str:
        return f"LatentCodec(vae={self.vae_ref!r}, latent_shape={self.latent_shape})"

