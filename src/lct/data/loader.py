"""Fast batched reading of memory-mapped latents, in a data order that is a pure function of the step.

Step k reads rows [j*B, (j+1)*B) of the permutation of epoch e = k // steps_per_epoch (j = k mod
steps_per_epoch), and rank r of W takes the contiguous chunk r of that global batch. A resumed run starts
at the restored global step; a W-process run sees, in total, exactly the single-process global batch.

Per-item __getitem__ + collate costs ~10 µs of Python per latent; gathering a whole batch with one
numpy fancy index per shard and normalizing it in place keeps the loader far above the training step.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from lct.data.shards import LatentShards
from lct.errors import LctError


class LatentBatchDataset(Dataset):
    """dataset[index_array] -> normalized x0 batch (B, C, H, W) float32: x0 = sigma_data (z - mu) / s.

    `keep` (sorted global indices) restricts the dataset to those latents: index i reads latent keep[i]."""

    def __init__(self, shards: LatentShards, mean: np.ndarray, std: np.ndarray, sigma_data: float,
                 keep: np.ndarray | None = None):
        self.shards, self.keep = shards, keep
        self.mean = np.ascontiguousarray(mean, dtype=np.float32)
        self.scale = np.ascontiguousarray(sigma_data / std, dtype=np.float32)

    def __len__(self) -> int:
        return len(self.shards) if self.keep is None else len(self.keep)

    def __getitem__(self, indices) -> torch.Tensor:
        # Read in sorted order (the memmap front to back), hand rows back in the sampler's order: a
        # rank's rows must be its chunk of the global batch, in order (DDP == single process).
        indices = np.asarray(indices, dtype=np.int64)
        if self.keep is not None:
            indices = self.keep[indices]   # monotone: the sorted read order below is unchanged
        order = np.argsort(indices, kind="stable")
        z = np.empty((len(indices), *self.shards.shape), dtype=np.float32)
        z[order] = self.shards.gather(indices[order])
        np.subtract(z, self.mean, out=z)
        np.multiply(z, self.scale, out=z)
        return torch.from_numpy(z)


class StepBatchSampler(Sampler[list[int]]):
    """Infinite batch sampler; yields this rank's indices for steps start_step, start_step + 1, ..."""

    def __init__(self, num_items: int, global_batch: int, seed: int = 0, rank: int = 0, world: int = 1,
                 start_step: int = 0):
        if global_batch % world:
            raise LctError(f"data.batch_size={global_batch} (the global batch) is not divisible by the {world} "
                           f"processes; set data.batch_size to a multiple of {world}")
        if num_items < global_batch:
            raise LctError(f"dataset has {num_items} items, fewer than one global batch of {global_batch}; set "
                           f"data.batch_size={num_items} or less, or encode more images")
        self.n, self.B, self.seed, self.rank, self.world = num_items, global_batch, seed, rank, world
        self.start_step = start_step
        self.steps_per_epoch = num_items // global_batch   # drop_last: each epoch is whole batches

    def permutation(self, epoch: int) -> torch.Tensor:
        """The item order of `epoch` (all ranks agree on it)."""
        return torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 100_003 + epoch))

    def global_batch(self, step: int) -> torch.Tensor:
        """Dataset indices of the whole (all-rank) batch at `step`."""
        epoch, j = divmod(step, self.steps_per_epoch)
        return self.permutation(epoch)[j * self.B:(j + 1) * self.B]

    def __iter__(self):
        b = self.B // self.world
        step, perm, epoch = self.start_step, None, None
        while True:
            e, j = divmod(step, self.steps_per_epoch)
            if e != epoch:   # one permutation per epoch, not per step
                perm, epoch = self.permutation(e), e
            chunk = perm[j * self.B:(j + 1) * self.B][self.rank * b:(self.rank + 1) * b]
            yield chunk.tolist()
            step += 1


def step_loader(dataset: Dataset, num_items: int, global_batch: int, seed: int, trainer, **loader_kwargs):
    """A DataLoader over `StepBatchSampler`, positioned at the trainer's (restored) global step."""
    from torch.utils.data import DataLoader
    rank, world, step = (trainer.global_rank, trainer.world_size, trainer.global_step) if trainer else (0, 1, 0)
    sampler = StepBatchSampler(num_items, global_batch, seed, rank, world, start_step=step)
    # batch_size=None + a batch sampler as `sampler`: each fetch is one gather of a whole batch.
    return DataLoader(dataset, sampler=sampler, batch_size=None, **loader_kwargs)
