"""``python -m longmagpie.cli``: the ``longmagpie`` command line."""

from longmagpie.cli.commands import main

main()
