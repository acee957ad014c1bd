"""The ``longmagpie`` command line (typer).

One command per stage (``commands``), and ``longmagpie run`` over a ``pipeline.toml`` (``pipeline``).
"""

from longmagpie.cli.commands import app, main

__all__ = ["app", "main"]
