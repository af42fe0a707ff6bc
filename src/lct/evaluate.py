"""`python -m lct.evaluate`: lct.cli.evaluate."""

from lct.cli.evaluate import entry

if __name__ == "__main__":
    entry()
