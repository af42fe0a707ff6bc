"""`python -m lct.fit_c`: lct.cli.fit_c."""

from lct.cli.fit_c import entry

if __name__ == "__main__":
    entry()
