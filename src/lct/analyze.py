"""`python -m lct.analyze`: lct.cli.analyze."""

from lct.cli.analyze import entry

if __name__ == "__main__":
    entry()
