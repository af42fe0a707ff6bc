"""`python -m lct.autoencoder`: lct.tools.autoencoder (trains one of the shipped assets)."""

from lct.cli import run_cli
from lct.tools.autoencoder import main

if __name__ == "__main__":
    run_cli(main)
