"""longmagpie: long-context instruction data made into training-ready packed sequences.

The public API:

- :func:`pack` packs tokenized samples into fixed-capacity rows, keeping a ``seq_lengths`` boundary
  array per row so training can mask attention between documents.
- :func:`pack_stats` / :func:`pack_metadata` read what a packing run recorded in the table.
- :func:`synthetic_samples` builds seeded tokenized samples (demo, tests, benchmarks).
"""

from longmagpie._core import __version__
from longmagpie.packing import PackStats, pack, pack_metadata, pack_stats
from longmagpie.synthetic import synthetic_samples

__all__ = ["PackStats", "__version__", "pack", "pack_metadata", "pack_stats", "synthetic_samples"]
