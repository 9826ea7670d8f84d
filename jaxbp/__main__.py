"""`python -m jaxbp COMMAND [--flags]`: the command line of `jaxbp.cli` (`jaxbp --help` lists
the commands, `jaxbp COMMAND --help` a command's flags)."""

from jaxbp.cli import run

run()
