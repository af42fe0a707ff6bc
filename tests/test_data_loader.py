"""Streaming latents: normalization, DDP split, batch contents, and clear errors on broken roots."""

import itertools
import os
import shutil

import lightning as L
import numpy as np
import pytest
import torch

from lct.core import PAPER
from lct.data import LatentCodec, LatentDataError, LatentDataModule
from lct.data.encoding import write_array_root
from lct.data.loader import StepBatchSampler
from lct.data.vae import save_tiny_vae
from lct.train.callbacks import ReleaseProcessGroup

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _heavy_tailed(n, shape=(4, 8, 8), seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_t(3, size=(n, *shape)) * 3 + rng.normal(size=shape)).astype(np.float32)


@pytest.fixture
def root(tmp_path):
    z = _heavy_tailed(1000)
    write_array_root(tmp_path / "lat", [z[:300], z[300:700], z[700:]])
    return tmp_path / "lat"


def test_normalization_inverse_exact(root):
    codec = LatentCodec.from_root(root, sigma_data=PAPER.sigma_data)
    z = torch.from_numpy(_heavy_tailed(16, seed=1))
    x0 = codec.normalize(z)
    torch.testing.assert_close(codec.denormalize(x0), z, rtol=1e-6, atol=1e-5)
    z64 = z.double()
    torch.testing.assert_close(codec.denormalize(codec.normalize(z64)), z64, rtol=1e-12, atol=1e-12)


def test_batches_are_normalized_latents(root):
    dm = LatentDataModule(
        sigma_data=PAPER.sigma_data, root=str(root), batch_size=100, latent_channels=4, latent_resolution=8
    )
    dm.prepare_data()
    dm.setup("fit")
    batches = list(itertools.islice(dm.train_dataloader(), 10))  # one epoch of the endless stream
    assert len(batches) == 10 and batches[0].shape == (100, 4, 8, 8) and batches[0].dtype == torch.float32
    x0 = torch.cat(batches)
    z = torch.from_numpy(np.concatenate([_heavy_tailed(1000)]))
    expected = dm.codec.normalize(z)
    # Same multiset of rows: sort both by a row key.
    key = lambda t: t.flatten(1)[:, :3].sum(1).argsort()  # noqa: E731
    torch.testing.assert_close(x0[key(x0)], expected[key(expected)], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x0.std(0).mean(), torch.tensor(0.5), atol=5e-3, rtol=0)


@pytest.mark.parametrize("world", [1, 2, 4, 8])
def test_ddp_split_covers_every_item_once_and_matches_single_process(world):
    n, batch = 1003, 32
    single = StepBatchSampler(n, batch, seed=7)
    steps = single.steps_per_epoch
    assert steps == n // batch
    ref = list(itertools.islice(iter(single), 2 * steps))
    per_rank = [list(itertools.islice(iter(StepBatchSampler(n, batch, 7, r, world)), 2 * steps)) for r in range(world)]
    for k in range(2 * steps):  # the ranks' chunks, concatenated in rank order, are the global batch
        assert sum((per_rank[r][k] for r in range(world)), []) == ref[k]
    for epoch in (0, 1):
        flat = sum(ref[epoch * steps : (epoch + 1) * steps], [])
        assert len(set(flat)) == len(flat) == steps * batch  # each item at most once per epoch
    assert ref[:steps] != ref[steps:]  # the order changes with the epoch


def test_sampler_resumes_at_any_step_and_is_deterministic():
    a = list(itertools.islice(iter(StepBatchSampler(500, 32, seed=3)), 40))
    b = list(itertools.islice(iter(StepBatchSampler(500, 32, seed=3, start_step=17)), 23))
    assert a[17:] == b
    with pytest.raises(ValueError, match="not divisible"):
        StepBatchSampler(500, 30, world=4)
    with pytest.raises(ValueError, match="fewer than one global batch"):
        StepBatchSampler(10, 32)


def test_missing_metadata_names_the_encode_command(tmp_path):
    dm = LatentDataModule(sigma_data=PAPER.sigma_data, root=str(tmp_path / "nothing"), batch_size=8)
    with pytest.raises(LatentDataError, match=r"metadata.json does not exist.*python -m lct.encode"):
        dm.prepare_data()


def test_shard_shape_or_dtype_mismatch_names_the_shard(root):
    np.save(root / "shards" / "000001.npy", np.zeros((400, 4, 8, 8), np.float64))
    with pytest.raises(LatentDataError, match=r"000001.npy is float64.*re-encode"):
        LatentDataModule(sigma_data=PAPER.sigma_data, root=str(root), batch_size=8).setup("fit")
    np.save(root / "shards" / "000001.npy", np.zeros((400, 4, 4, 4), np.float32))
    with pytest.raises(LatentDataError, match=r"000001.npy is float32 \(400, 4, 4, 4\)"):
        LatentDataModule(sigma_data=PAPER.sigma_data, root=str(root), batch_size=8).setup("fit")


def test_config_shape_mismatch_is_clear(root):
    with pytest.raises(LatentDataError, match=r"latent_resolution=32.*data.latent_resolution=8"):
        LatentDataModule(
            sigma_data=PAPER.sigma_data, root=str(root), batch_size=8, latent_channels=4, latent_resolution=32
        ).setup("fit")


def test_stats_of_another_vae_or_dataset_rejected(root, tmp_path):
    write_array_root(tmp_path / "other", [_heavy_tailed(200, seed=5)])
    shutil.copy(tmp_path / "other" / "std.npy", root / "std.npy")
    with pytest.raises(LatentDataError, match=r"std.npy does not belong to these latents.*--stats-only"):
        LatentCodec.from_root(root, sigma_data=PAPER.sigma_data)


def test_codec_refuses_a_different_vae(tmp_path):
    ref = save_tiny_vae(tmp_path / "vae_a", seed=0)
    other = save_tiny_vae(tmp_path / "vae_b", seed=1)
    from lct.data.vae import describe_vae, load_vae

    info = describe_vae(load_vae(ref), ref)
    write_array_root(tmp_path / "lat", [_heavy_tailed(50)], vae_info=info, image={"channels": 3, "size": 16})
    images = LatentCodec.from_root(tmp_path / "lat", sigma_data=PAPER.sigma_data).decode(torch.zeros(3, 4, 8, 8))
    assert images.shape == (3, 3, 16, 16) and images.abs().max() <= 1
    with pytest.raises(LatentDataError, match="not the one that encoded these latents"):
        LatentCodec.from_root(tmp_path / "lat", vae=other, sigma_data=PAPER.sigma_data).decode(torch.zeros(1, 4, 8, 8))


def test_worker_processes_read_the_memmap(root):
    dm = LatentDataModule(
        sigma_data=PAPER.sigma_data, root=str(root), batch_size=250, num_workers=2, persistent_workers=False
    )
    dm.setup("fit")
    assert sum(len(b) for b in itertools.islice(dm.train_dataloader(), 4)) == 1000


class _Recorder(L.LightningModule):
    """Saves the first element of every x0 it trains on, per rank and epoch (spawned: module level)."""

    def __init__(self, out):
        super().__init__()
        self.w, self.out, self.rows = torch.nn.Parameter(torch.zeros(1)), out, []

    def training_step(self, batch, i):
        self.rows.append(batch[:, 0, 0, 0].clone())
        return (self.w * batch.mean()).sum()

    def on_train_end(self):
        torch.save(torch.cat(self.rows), self.out / f"r{self.global_rank}.pt")

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), 0.0)


@pytest.mark.slow
def test_lightning_ddp_spawn_sees_every_item_once(tmp_path):
    """Two CPU ranks under Lightning's ddp_spawn: over one epoch of steps the ranks partition the data."""
    z = np.random.default_rng(0).normal(size=(1000, 4, 2, 2)).astype(np.float32)
    z[:, 0, 0, 0] = np.arange(1000)  # element (0, 0, 0) carries the item id
    write_array_root(tmp_path / "lat", [z])
    dm = LatentDataModule(
        sigma_data=PAPER.sigma_data, root=str(tmp_path / "lat"), batch_size=100
    )  # global batch: 50 per rank
    L.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp_spawn",
        max_steps=10,
        logger=False,
        use_distributed_sampler=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        callbacks=[ReleaseProcessGroup()],
    ).fit(_Recorder(tmp_path), dm)
    codec = LatentCodec.from_root(tmp_path / "lat", sigma_data=PAPER.sigma_data)
    x0 = torch.cat([torch.load(tmp_path / f"r{r}.pt") for r in (0, 1)])
    ids = torch.round(x0 * codec.std[0, 0, 0] / 0.5 + codec.mean[0, 0, 0]).long()
    assert sorted(ids.tolist()) == list(range(1000))
