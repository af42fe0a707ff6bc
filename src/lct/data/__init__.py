"""Latent data: encoding images to memory-mapped shards, the codec that owns mu/s and the VAE, and the
Lightning datamodule that streams normalized latents."""
from importlib import import_module

# Lazy exports: `python -m lct.encode` and the analysis CLI should not pay for importing Lightning.
_EXPORTS = {
    "LatentCodec": "lct.data.codec",
    "LatentDataModule": "lct.data.datamodule",
    "LatentDataError": "lct.data.shards",
    "LatentShards": "lct.data.shards",
}
__all__ = list(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'lct.data' has no attribute {name!r}")
