"""``python -m quorate`` is the ``quorate`` command."""

from quorate.cli.main import main

main()
