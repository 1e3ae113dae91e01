"""Benchmarks: each module measures one part of quorate and returns a JSON-ready
report; ``quorate bench <name>`` prints it as a table or, with ``--json``, as
one object a machine can compare."""
