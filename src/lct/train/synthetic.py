"""Synthetic Gaussian 'latents' with the real data module's interface: for tests and GPU throughput runs."""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from lct.data.loader import step_loader


class _Rows(Dataset):
    """Batched reads: the batch sampler hands over a list of indices, we return one (b, C, H, W) tensor."""

    def __init__(self, data: torch.Tensor):
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, idx):
        return self.data[idx]


class SyntheticLatentDataModule(L.LightningDataModule):
    """N(0, sigma_data^2) tensors of `latent_shape` (like normalized latents); no codec.

    `sigma_data` is the run's method.sigma.data (lct.builders.build_datamodule passes it); `epochs` is read by
    the trainer config (K = epochs x steps per epoch) and accepted so that the whole `data` group can be
    instantiated. Any other key is refused, so that a misspelt `data.<key>` is not silently ignored."""

    def __init__(
        self,
        *,
        sigma_data: float,
        num_items: int = 1024,
        latent_channels: int = 4,
        latent_resolution: int = 8,
        batch_size: int = 64,
        seed: int = 0,
        epochs: int | None = None,
    ):
        super().__init__()
        self.num_items, self.batch_size, self.seed, self.epochs = num_items, batch_size, seed, epochs
        self.latent_shape = (latent_channels, latent_resolution, latent_resolution)
        g = torch.Generator().manual_seed(seed)
        self.data = sigma_data * torch.randn((num_items, *self.latent_shape), generator=g)
        self.codec = None

    def train_dataloader(self) -> DataLoader:
        return step_loader(_Rows(self.data), self.num_items, self.batch_size, self.seed, self.trainer)
