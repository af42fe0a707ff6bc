import os
import tempfile

# No network on CI or here: never let a library try the hub or wandb's servers.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("HYDRA_FULL_ERROR", "1")
# On 2 shared cores, OpenMP's spin-waiting threads stall each other (a 0.02 s forward took 5 s under
# load); tests often share the machine, so they wait passively (slower when idle: benchmarks/README.md).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Caches lct keeps outside a run (the non-finite scan of a user's latent root) go to a folder of this session.
os.environ.setdefault("LCT_CACHE_DIR", tempfile.mkdtemp(prefix="lct-cache-"))

import pytest


@pytest.fixture(autouse=True)
def _fresh_ddp_port():
    """Lightning's spawn launcher leaves MASTER_PORT set in this process; the next DDP test would reuse
    a port that may still be in TIME_WAIT. Drop it so each test picks a free one."""
    yield
    for key in ("MASTER_PORT", "MASTER_ADDR"):
        os.environ.pop(key, None)
