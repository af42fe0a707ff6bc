"""Encoding images to latent shards: statistics, resume, unreadable images, empty sources."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from lct.cli.encode import main as encode_main
from lct.data.encoding import EncodeOptions, encode_latents
from lct.data.shards import LatentDataError, LatentShards
from lct.data.vae import save_tiny_vae
from lct.errors import LctError

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def tiny_vae(tmp_path_factory):
    return save_tiny_vae(tmp_path_factory.mktemp("vae") / "tiny")


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    """12 RGB images of mixed sizes in nested folders (exercises resize, crop and recursion)."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for i in range(12):
        sub = root / f"part{i % 2}"
        sub.mkdir(exist_ok=True)
        size = (20 + i, 16 + 2 * i)
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(sub / f"{i:02d}.png")
    return root


def _opts(source, out, vae, **kw):
    settings = dict(size=16, batch_size=5, shard_items=4, workers=2) | kw
    return EncodeOptions(source=str(source), out=str(out), vae=vae, **settings)


def _all_latents(root):
    shards = LatentShards(root)
    return np.concatenate(list(shards.iter_chunks()))


def test_stats_match_direct_computation(tmp_path, image_folder, tiny_vae):
    meta = encode_latents(_opts(image_folder, tmp_path / "lat", tiny_vae))
    z = _all_latents(tmp_path / "lat")
    assert meta["count"] == 12 and z.shape == (12, 4, 8, 8) and z.dtype == np.float32
    np.testing.assert_allclose(np.load(tmp_path / "lat" / "mean.npy"), z.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.load(tmp_path / "lat" / "std.npy"), z.std(0, ddof=1), rtol=1e-5, atol=1e-6)
    summary = meta["stats"]["per_channel"][0]
    np.testing.assert_allclose(summary["std"], z[:, 0].std(), rtol=1e-5)
    assert meta["image"] == {"channels": 3, "size": 16} and meta["latent"]["shape"] == [4, 8, 8]


def test_resume_after_interruption_equals_one_run(tmp_path, image_folder, tiny_vae):
    encode_latents(_opts(image_folder, tmp_path / "one", tiny_vae, flip=True))
    partial = encode_latents(_opts(image_folder, tmp_path / "two", tiny_vae, flip=True, max_shards=1))
    assert not partial["complete"] and partial["count"] == 8  # 4 images + their flips
    with pytest.raises(LatentDataError, match="not complete"):
        LatentShards(tmp_path / "two")
    meta = encode_latents(_opts(image_folder, tmp_path / "two", tiny_vae, flip=True, batch_size=3))
    assert meta["complete"] and meta["count"] == 24
    np.testing.assert_array_equal(_all_latents(tmp_path / "one"), _all_latents(tmp_path / "two"))
    with pytest.raises(LatentDataError, match="other settings"):
        encode_latents(_opts(image_folder, tmp_path / "two", tiny_vae, flip=False))


def test_flip_stores_mirrored_copy(tmp_path, image_folder, tiny_vae):
    encode_latents(_opts(image_folder, tmp_path / "lat", tiny_vae, flip=True, posterior="mean"))
    z = _all_latents(tmp_path / "lat")
    assert len(z) == 24 and not np.allclose(z[0], z[1])


def test_corrupt_image_skipped_and_counted(tmp_path, image_folder, tiny_vae):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, path in enumerate(sorted(image_folder.rglob("*.png"))[:5]):
        (folder / f"{i}.png").write_bytes(path.read_bytes())
    (folder / "2_broken.png").write_bytes(b"not a png at all")
    meta = encode_latents(_opts(folder, tmp_path / "lat", tiny_vae))
    assert meta["count"] == 5 and meta["n_skipped"] == 1
    assert meta["skipped"][0]["path"].endswith("2_broken.png")
    with pytest.raises(LatentDataError, match="2_broken.png"):
        encode_latents(_opts(folder, tmp_path / "strict", tiny_vae, strict=True, shard_items=2))
    # Shards committed before the failure are kept.
    assert json.loads((tmp_path / "strict" / "metadata.json").read_text())["count"] == 2


def test_empty_folder_is_a_clear_error(tmp_path, tiny_vae):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    with pytest.raises(ValueError, match="holds no images"):
        encode_latents(_opts(tmp_path / "empty", tmp_path / "lat", tiny_vae))
    with pytest.raises(LctError, match="neither a built-in"):
        encode_latents(_opts(tmp_path / "missing", tmp_path / "lat", tiny_vae))


def test_cli_builtin_rgb_source_and_stats_only(tmp_path, tiny_vae):
    out = tmp_path / "lat"
    meta = encode_main(
        [
            "--source",
            "skimage",
            "--vae",
            tiny_vae,
            "--size",
            "16",
            "--out",
            str(out),
            "--posterior",
            "mean",
            "--batch-size",
            "32",
        ]
    )
    assert meta["count"] == 72 and meta["provenance"]["command"].startswith("python -m lct.encode")
    mean = np.load(out / "mean.npy")
    (out / "mean.npy").unlink()
    encode_main(["--stats-only", "--out", str(out)])
    np.testing.assert_array_equal(np.load(out / "mean.npy"), mean)
