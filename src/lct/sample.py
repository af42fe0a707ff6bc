"""`python -m lct.sample`: lct.cli.sample."""

from lct.cli.sample import entry

if __name__ == "__main__":
    entry()
