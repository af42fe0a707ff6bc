"""lct.train: the Lightning + Hydra orchestration around lct.core (`python -m lct.train`)."""
