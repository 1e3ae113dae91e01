"""The ``quorate`` command line. Each command group lives in its own module and
registers itself on ``quorate.cli.main.app``."""
