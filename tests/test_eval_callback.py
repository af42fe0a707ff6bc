"""SampleEvalCallback in a real (tiny) Lightning run: metrics logged at 1 and 2 NFE, grid saved, reference cached."""

import lightning as L
import pytest
import torch
from test_eval_helpers import LATENT_SHAPE, TinyCodec, TinyFeatures, tiny_bundle
from torch.utils.data import DataLoader, TensorDataset

from lct.core.sampling import multistep_sample
from lct.eval.callback import SampleEvalCallback
from lct.eval.reference import load_reference
from lct.train.callbacks import ReleaseProcessGroup


class TinyModule(L.LightningModule):
    def __init__(self):
        super().__init__()
        bundle = tiny_bundle()
        self.f, self.noise_levels = bundle.model, bundle.noise  # the callback samples at the run's levels
        self.generate_calls = []

    def training_step(self, batch, batch_idx):
        return self.f(batch[0], 1.0).square().mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=1e-3)

    @torch.no_grad()
    def generate(self, noise, sigmas, ema=True):
        self.generate_calls.append((noise.shape[0], list(sigmas), ema))
        return multistep_sample(self.f, noise, sigmas, self.noise_levels.sigma_min)


class TinyData(L.LightningDataModule):
    root = "tiny-latents"

    def setup(self, stage=None):
        self.codec = TinyCodec()

    def train_dataloader(self):
        x = torch.randn(32, *LATENT_SHAPE, generator=torch.Generator().manual_seed(0)) * 0.5
        return DataLoader(TensorDataset(x), batch_size=8)


def test_callback_logs_metrics_and_grid(tmp_path):
    cb = SampleEvalCallback(
        every_n_steps=2, num_samples=6, batch_size=4, num_reference=12, kid_subset_size=4, extractor=TinyFeatures()
    )
    module = TinyModule()
    trainer = L.Trainer(
        max_steps=3,
        default_root_dir=tmp_path,
        callbacks=[cb],
        logger=L.pytorch.loggers.CSVLogger(tmp_path),
        enable_progress_bar=False,
        enable_checkpointing=False,
        accelerator="cpu",
        devices=1,
    )
    trainer.fit(module, datamodule=TinyData())
    for key in ("fid", "kid", "precision", "recall"):
        for nfe in (1, 2):
            assert f"val/{key}_{nfe}nfe" in trainer.callback_metrics
    # step 2 in the loop and step 3 at the end, each at 1 and 2 NFE in batches of 4 + 2
    assert [c[0] for c in module.generate_calls] == [4, 2] * 4 and all(c[2] for c in module.generate_calls)
    assert module.generate_calls[2][1][1] == cb.sigma_mid and 0.43 < cb.sigma_mid < 0.45
    # samples/ and eval/ sit in the run directory (default_root_dir), beside checkpoints/.
    assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == ["step0000002.png", "step0000003.png"]
    ref = load_reference(tmp_path / "eval" / "reference.pt")
    assert ref.count == 12 and ref.provenance["dataset"] == "TinyData:tiny-latents"
    metrics_csv = (tmp_path / "lightning_logs" / "version_0" / "metrics.csv").read_text()
    assert "val/fid_1nfe" in metrics_csv and "val/recall_2nfe" in metrics_csv


def test_callback_under_two_process_ddp_matches_one_process(tmp_path):
    """Every rank scores its slice of the seeds; the real side is seeded once. 1-NFE FID equals 1 process."""

    def run(devices, root, ref=None):
        cb = SampleEvalCallback(
            every_n_steps=2,
            num_samples=7,
            batch_size=2,
            num_reference=12,
            kid_subset_size=3,
            extractor=TinyFeatures(),
            reference_path=ref,
            nfe=(1,),
        )
        trainer = L.Trainer(
            max_steps=2,
            default_root_dir=root,
            callbacks=[cb, ReleaseProcessGroup()],  # as lct.train's trainer: a clean exit (test_ddp_exit.py)
            logger=False,
            enable_progress_bar=False,
            enable_checkpointing=False,
            accelerator="cpu",
            devices=devices,
            strategy="ddp_spawn" if devices > 1 else "auto",
        )
        trainer.fit(TinyModule(), datamodule=TinyData())
        return float(trainer.callback_metrics["val/fid_1nfe"])

    ref = str(tmp_path / "ref.pt")
    assert run(2, tmp_path / "ddp", ref) == pytest.approx(run(1, tmp_path / "one", ref), rel=1e-4)
