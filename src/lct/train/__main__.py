"""`python -m lct.train [experiment=...] [group=option ...]`: lct.cli.train."""

from lct.cli.train import entry

if __name__ == "__main__":
    entry()
