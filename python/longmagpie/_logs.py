"""Logging for the command line: ``--verbose`` turns on the ``longmagpie`` loggers, written beside tqdm bars.

The library only creates loggers (``logging.getLogger(__name__)``) and never configures logging itself, so an
application embedding longmagpie keeps its own handlers; the CLI calls :func:`configure_logging`.
"""

from __future__ import annotations

import logging
import sys

_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class _TqdmHandler(logging.Handler):
    """Write records with ``tqdm.write`` so they print above progress bars instead of breaking them."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # a log line must never end a run
            self.handleError(record)


def level_for(verbose: int, quiet: bool = False) -> int:
    """Return the log level of ``-v`` given ``verbose`` times (0: warnings, 1: info, 2+: debug; quiet: errors)."""
    if quiet:
        return logging.ERROR
    return {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)


def configure_logging(verbose: int, quiet: bool = False) -> None:
    """Send the ``longmagpie`` loggers to stderr at the level ``verbose``/``quiet`` ask for (idempotent)."""
    root = logging.getLogger("longmagpie")
    for handler in list(root.handlers):
        if isinstance(handler, _TqdmHandler):
            root.removeHandler(handler)
    handler = _TqdmHandler()
    handler.setFormatter(logging.Formatter(_FORMAT, datefmt="%H:%M:%S"))
    root.addHandler(handler)
    root.setLevel(level_for(verbose, quiet))
    root.propagate = False
