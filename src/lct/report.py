"""`python -m lct.report`: lct.cli.report."""

from lct.cli.report import entry

if __name__ == "__main__":
    entry()
