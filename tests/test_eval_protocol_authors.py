"""`lct.evaluate --protocol authors`: each step where the authors' FID pipeline differs from ours."""

import functools

import numpy as np
import pytest
import torch
from PIL import Image
from test_eval_helpers import TinyFeatures, fake_checkpoint, install_fake_loader
from torch import nn
from torch.nn import functional as F

import lct.cli.evaluate as evaluate_cli
import lct.eval.run as eval_run
from lct.data.sources import load_mnist
from lct.errors import LctError
from lct.eval.inception import resize, to_uint8
from lct.eval.metrics import GenerativeMetrics
from lct.eval.protocol import (
    AuthorsFeatures,
    authors_sample_count,
    builtin_real_images,
    jpeg_roundtrip,
    pytorch_fid_input,
    truncate_to_uint8,
)


@pytest.mark.parametrize("n, expected", [(50_000, 50_176), (1000, 1024), (256, 256), (257, 512), (1, 256)])
def test_sample_count_rounds_up_to_whole_global_batches(n, expected):
    assert authors_sample_count(n) == expected


def test_sample_count_rejects_nonsense():
    with pytest.raises(LctError):
        authors_sample_count(0)


def test_truncation_differs_from_our_rounding():
    x = torch.tensor([-1.5, -1.0, 0.0, 0.999, 1.0, 2.0]).view(1, 1, 1, 6)
    assert truncate_to_uint8(x).flatten().tolist() == [0, 0, 127, 254, 255, 255]
    assert to_uint8(x)[:, :1].flatten().tolist() == [0, 0, 128, 255, 255, 255]  # ours rounds
    u = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16)
    assert torch.equal(truncate_to_uint8(u), u)


def test_jpeg_roundtrip_is_pils_default_quality_and_lossy(tmp_path):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(img).save(tmp_path / "a.jpg")  # PIL's default quality: what the authors' .save() did
    saved = np.asarray(Image.open(tmp_path / "a.jpg").convert("RGB"))
    got = jpeg_roundtrip(torch.from_numpy(img).permute(2, 0, 1)[None])
    assert got.dtype == torch.uint8 and got.shape == (1, 3, 32, 32)
    assert np.array_equal(got[0].permute(1, 2, 0).numpy(), saved)
    assert not np.array_equal(saved, img)  # lossy
    err = lambda q: (
        (
            jpeg_roundtrip(torch.from_numpy(img).permute(2, 0, 1)[None], q).float()  # noqa: E731
            - torch.from_numpy(img).permute(2, 0, 1).float()
        )
        .abs()
        .mean()
    )
    assert err(95) < err(75) < err(20)


def test_jpeg_roundtrip_makes_grey_rgb_and_keeps_flat_images():
    flat = torch.full((2, 1, 16, 16), 200, dtype=torch.uint8)
    got = jpeg_roundtrip(flat)
    assert got.shape == (2, 3, 16, 16) and (got.int() - 200).abs().max() <= 1
    with pytest.raises(ValueError, match="uint8"):
        jpeg_roundtrip(flat.float())


def test_pytorch_fid_input_is_torch_bilinear_of_x_over_255_then_2x_minus_1():
    u = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    got = pytorch_fid_input(u)
    want = 2 * F.interpolate(u.float() / 255, size=(299, 299), mode="bilinear", align_corners=False) - 1
    assert got.shape == (2, 3, 299, 299) and torch.allclose(got, want)
    assert torch.allclose(pytorch_fid_input(torch.full((1, 3, 4, 4), 255, dtype=torch.uint8)), torch.ones(1))
    ours = (resize(u.float(), "tf1_bilinear") - 128) / 128  # ours: TF1 resize, (x-128)/128
    assert (got - ours).abs().max() > 0.01  # the two pipelines are not the same input
    assert pytorch_fid_input(torch.zeros(1, 3, 299, 299, dtype=torch.uint8)).eq(-1).all()


class Recorder(nn.Module):
    """Stands in for Inception: records its input and returns its per-channel mean as 'features'."""

    def forward(self, x):
        self.seen = x
        return x.mean(dim=(2, 3))


def test_authors_features_chain_truncate_jpeg_resize_normalize():
    net = Recorder()
    feats = AuthorsFeatures(net, "net-id", num_features=3)
    x = torch.rand(2, 1, 16, 16) * 2 - 1
    out = feats(x)
    want = pytorch_fid_input(jpeg_roundtrip(truncate_to_uint8(x)))
    assert torch.equal(net.seen, want) and out.shape == (2, 3)
    assert torch.equal(feats(out), out)  # features pass unchanged
    assert feats.extractor_id == "net-id|authors:truncate,jpeg75,pytorch-fid-input"
    assert feats.resize_mode == "torch_bilinear" and not feats.train().training


def test_builtin_real_images_are_the_padded_digits():
    name, images = builtin_real_images({"builtin": "mnist"})
    assert name == "builtin:mnist:real" and images.dtype == torch.uint8 and images.shape == (5000, 1, 32, 32)
    digits, labels = load_mnist()
    order = np.random.default_rng(0).permutation(len(digits))
    assert torch.equal(images[:, 0], torch.from_numpy(digits[order]))  # shuffled: the file is sorted by label
    assert np.bincount(labels[order[:1000]], minlength=10).min() > 50  # so a 1,000 prefix holds every class
    with pytest.raises(LctError, match="--reference-images"):
        builtin_real_images({"root": "data/celebahq"})


def test_evaluate_with_authors_protocol_rounds_count_and_keeps_separate_caches(tmp_path, monkeypatch):
    install_fake_loader(monkeypatch)
    ckpt = fake_checkpoint(tmp_path)
    tiny = TinyFeatures()
    monkeypatch.setattr(eval_run, "GenerativeMetrics", functools.partial(GenerativeMetrics, extractor=tiny))
    net = nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(48, 64))
    monkeypatch.setattr(eval_run, "authors_extractor", lambda path: AuthorsFeatures(net, "tiny", 64))
    monkeypatch.setattr(eval_run, "authors_sample_count", functools.partial(authors_sample_count, global_batch=8))
    real = np.random.default_rng(0).integers(0, 256, (12, 16, 16, 3), dtype=np.uint8)
    np.savez(tmp_path / "real.npz", images=real)
    common = [
        str(ckpt),
        "--out",
        str(tmp_path / "e"),
        "--num-samples",
        "10",
        "--batch-size",
        "4",
        "--nfe",
        "1",
        "--reference-images",
        str(tmp_path / "real.npz"),
        "--kid-subset-size",
        "5",
        "--device",
        "cpu",
        "--no-progress",
    ]
    with pytest.warns(UserWarning, match="biased"):
        ours = evaluate_cli.main(common)
    with pytest.warns(UserWarning, match="biased"):
        theirs = evaluate_cli.main(common + ["--protocol", "authors"])
    assert ours["protocol"] == "ours" and theirs["protocol"] == "authors"
    assert ours["results"]["1nfe"]["num_fake"] == 10 and theirs["results"]["1nfe"]["num_fake"] == 16
    assert theirs["results"]["1nfe"]["extractor"].endswith("jpeg75,pytorch-fid-input")
    assert theirs["reference"]["extractor"] != ours["reference"]["extractor"]
    assert (tmp_path / "e" / "reference.pt").is_file() and (tmp_path / "e" / "reference_authors.pt").is_file()
    assert (tmp_path / "e" / "features_authors").is_dir()


def test_authors_protocol_needs_real_images_for_a_non_builtin_dataset(tmp_path, monkeypatch):
    install_fake_loader(monkeypatch)
    ckpt = fake_checkpoint(tmp_path)
    monkeypatch.setattr(eval_run, "authors_extractor", lambda path: AuthorsFeatures(Recorder(), "rec", 3))
    with pytest.raises(LctError, match="--reference-images"):
        evaluate_cli.main(
            [
                str(ckpt),
                "--out",
                str(tmp_path / "e"),
                "--num-samples",
                "4",
                "--nfe",
                "1",
                "--device",
                "cpu",
                "--no-progress",
                "--protocol",
                "authors",
            ]
        )
