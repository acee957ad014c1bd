"""``python -m longmagpie``: the ``longmagpie`` command line."""

from longmagpie.cli import main

main()
