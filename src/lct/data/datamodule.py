"""LatentDataModule: streams normalized latents x0 from a latent root (docs/architecture.md)."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader

from lct.data.builtin import ensure_builtin
from lct.data.codec import LatentCodec
from lct.data.loader import LatentBatchDataset, step_loader
from lct.data.scan import check_nonfinite, finite_indices
from lct.data.shards import METADATA, LatentDataError, LatentShards, load_stats, read_metadata

log = logging.getLogger(__name__)


def resolve_root(root: str | os.PathLike) -> Path:
    """A relative root is taken from the current directory (lct.train makes a relative data.root absolute from its
    launch directory before it builds the data: lct.train.run.record_data_root)."""
    path = Path(os.path.expanduser(str(root)))
    return path if path.is_absolute() else Path.cwd() / path


class LatentDataModule(L.LightningDataModule):
    """Memory-mapped latent shards -> batches of x0 = sigma_data (z - mu) / s, sharded across DDP ranks."""

    def __init__(self, root: str, batch_size: int, num_workers: int = 0, pin_memory: bool = False,
                 seed: int = 0, builtin: str | None = None, latent_channels: int | None = None,
                 latent_resolution: int | None = None, persistent_workers: bool = True, vae: str | None = None, epochs: int | None = None,
                 name: str | None = None, *, sigma_data: float,
                 skip_nonfinite: bool = False):
        """`epochs` and `name` are read by the trainer config; they are accepted here so that the
        whole `data` group can be instantiated. `vae` overrides the VAE path recorded in metadata;
        `sigma_data` comes from the run's method.sigma.data; `skip_nonfinite` leaves NaN/inf latents
        out of sampling instead of refusing the root (lct.data.scan)."""
        super().__init__()
        self.root = resolve_root(root)
        self.batch_size, self.num_workers, self.pin_memory = batch_size, num_workers, pin_memory
        self.seed, self.builtin = seed, builtin
        self.persistent_workers, self.vae_override = persistent_workers, vae
        self.latent_channels, self.latent_resolution = latent_channels, latent_resolution
        self.epochs, self.name, self.sigma_data = epochs, name, float(sigma_data)
        self.skip_nonfinite = bool(skip_nonfinite)
        self.nonfinite: dict[str, list[int]] | None = None   # {shard file: rows}, from the scan
        self.codec: LatentCodec | None = None
        self.dataset: LatentBatchDataset | None = None

    def prepare_data(self) -> None:
        """Build a built-in's latents on first use; fail early on a missing root, a latent shape that
        disagrees with the config, or non-finite latents (unless data.skip_nonfinite)."""
        meta = ensure_builtin(self.root, self.builtin) if self.builtin else read_metadata(self.root)
        self._check_shape(meta)
        self._scan(meta)

    def _scan(self, meta: dict) -> dict[str, list[int]]:
        """The root's non-finite rows, scanned once per module (and cached on disk per shard)."""
        if self.nonfinite is None:
            self.nonfinite = check_nonfinite(self.root, meta, self.skip_nonfinite)
        return self.nonfinite

    def setup(self, stage: str | None = None) -> None:
        if self.dataset is not None:
            return
        meta = read_metadata(self.root)
        self._check_shape(meta)
        bad = self._scan(meta)
        mean, std = load_stats(self.root, meta)
        shards = LatentShards(self.root, meta)
        keep = finite_indices(shards.offsets, meta, bad)
        self.dataset = LatentBatchDataset(shards, mean, std, self.sigma_data, keep)
        self.codec = LatentCodec(mean, std, self.vae_override or meta["vae"]["ref"],
                                 meta["vae"]["weights_fingerprint"], meta["image"]["channels"],
                                 meta["image"]["size"], sigma_data=self.sigma_data)
        log.info("latents: %d x %s from %s", len(self.dataset), meta["latent"]["shape"], self.root)

    def _check_shape(self, meta: dict) -> None:
        channels, height, width = meta["latent"]["shape"]
        wanted = (self.latent_channels, self.latent_resolution)
        if (self.latent_channels not in (None, channels)) or (self.latent_resolution not in (None, height)):
            raise LatentDataError(
                f"the data config says latent_channels={wanted[0]}, latent_resolution={wanted[1]} but "
                f"{self.root / METADATA} holds latents of shape {[channels, height, width]}; set "
                f"data.latent_channels={channels} data.latent_resolution={height} (or null: taken from the "
                "metadata), or point data.root at latents of the intended shape"
            )

    def train_dataloader(self) -> DataLoader:
        """An endless stream of this rank's share of each global batch (training length: max_steps)."""
        if self.dataset is None:
            self.setup("fit")
        return step_loader(self.dataset, len(self.dataset), self.batch_size, self.seed,
                           getattr(self, "trainer", None), num_workers=self.num_workers,
                           pin_memory=self.pin_memory,
                           persistent_workers=self.persistent_workers and self.num_workers > 0)

    @property
    def num_items(self) -> int:
        """Latents that training samples: the root's count less any left out by data.skip_nonfinite."""
        skipped = sum(len(rows) for rows in (self.nonfinite or {}).values())
        return int(read_metadata(self.root)["count"]) - skipped

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        return tuple(read_metadata(self.root)["latent"]["shape"])
