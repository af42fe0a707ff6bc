"""lct: latent consistency training from scratch (iCT / sLCT)."""

__version__ = "0.1.0"
