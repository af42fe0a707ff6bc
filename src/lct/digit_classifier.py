"""`python -m lct.digit_classifier`: lct.tools.digit_classifier (trains one of the shipped assets)."""

from lct.cli import run_cli
from lct.tools.digit_classifier import main

if __name__ == "__main__":
    run_cli(main)
