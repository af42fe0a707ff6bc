"""`python -m lct.encode`: lct.cli.encode."""

from lct.cli.encode import entry

if __name__ == "__main__":
    entry()
