"""longmagpie: long-context instruction data made into training-ready packed sequences.

The public API:

- :func:`pack` packs tokenized samples into fixed-capacity rows, keeping a ``seq_lengths`` boundary
  array per row so training can mask attention between documents.
- :func:`pack_stream` does the same over streams larger than memory, one window at a time.
- :func:`pack_plan` plans :func:`pack` from lengths alone (per row: sample, offset, length of each document);
  :func:`pack_from_plan` makes the rows from a plan and the samples, byte for byte :func:`pack`'s.
- :class:`PackOptions` and :class:`PmixOptions` hold the packing options, their defaults and checks, once: the
  streaming and Ray entry points take them (or their fields by name); :class:`ShardLimits` is how exports cut
  shards and row groups.
- :func:`pack_pmix` mixes long and short samples with p-mix (a short prefix per row, then long
  with probability ``p_long``), keeping a boundary and a kind per segment;
  :func:`pack_pmix_stream` does it over streams larger than memory.
- :func:`pack_stats`, :func:`pmix_stats` and :func:`pack_metadata` read what a run recorded in
  the table.
- :func:`assemble` turns single-document (context, query, answer) samples into multi-document chat
  samples, token-aware (:class:`Assembler` keeps a tokenized pool for many batches);
  :func:`encode_conversations` tokenizes multi-turn conversations with a mask on every answer;
  :func:`tokenize` tokenizes texts in Rust (parallel, GIL released).
- :func:`synthetic_samples` builds seeded tokenized samples (demo, tests, benchmarks).
- :func:`export_parquet` writes packed rows as a Hugging Face Parquet dataset (shards + card);
  :func:`export_mds` writes them as MDS for ProLong-style trainers (extra ``mds``).
- ``longmagpie.distributed.ray`` (extra ``ray``, imported only when asked for): ``ray_pack``, ``ray_pack_pmix`` and
  ``write_packed`` (and ``ray_pack_to_parquet``, ``ray_pack_pmix_to_parquet``) run the packers as Ray Data
  transforms over Parquet shards.
- ``longmagpie.integrations.torch.PackedCollator`` (extra ``torch``, imported only when asked for) collates
  packed rows for transformers' padding-free attention.
- :mod:`longmagpie.harvest` harvests (context, query, answer) rows with vLLM:
  ``longmagpie.harvest.harvest(HarvestConfig(...))`` returns a :class:`HarvestReport`;
  :func:`read_harvest` reads an output directory back.
- :mod:`longmagpie.hierarchical` builds conversations up to 1M tokens from chunk-level summaries and QAs:
  ``longmagpie.hierarchical.synthesize(HierarchicalConfig(...))`` returns a :class:`HierarchicalReport`.
"""

from typing import Any

from longmagpie._core import __version__
from longmagpie._metadata import pack_metadata
from longmagpie.assembly.assembler import AssembleConfig, Assembler, assemble, tokenize
from longmagpie.assembly.conversations import encode_conversations
from longmagpie.export import ExportResult, ShardLimits, export_mds, export_nemo, export_parquet
from longmagpie.harvest import HarvestConfig, HarvestReport, read_harvest
from longmagpie.hierarchical import HierarchicalConfig, HierarchicalReport
from longmagpie.options import PackOptions, PmixOptions
from longmagpie.packing.pack import PackStats, pack, pack_from_plan, pack_plan, pack_stats
from longmagpie.packing.pmix import PmixPackedStream, PmixStats, pack_pmix, pack_pmix_stream, pmix_stats
from longmagpie.packing.stream import PackedStream, pack_stream
from longmagpie.testing.synthetic import synthetic_samples

__all__ = [
    "AssembleConfig",
    "Assembler",
    "ExportResult",
    "HarvestConfig",
    "HarvestReport",
    "HierarchicalConfig",
    "HierarchicalReport",
    "PackOptions",
    "PackStats",
    "PackedStream",
    "PmixOptions",
    "PmixPackedStream",
    "PmixStats",
    "ShardLimits",
    "__version__",
    "assemble",
    "encode_conversations",
    "export_mds",
    "export_nemo",
    "export_parquet",
    "pack",
    "pack_from_plan",
    "pack_metadata",
    "pack_plan",
    "pack_pmix",
    "pack_pmix_stream",
    "pack_stats",
    "pack_stream",
    "pmix_stats",
    "read_harvest",
    "synthetic_samples",
    "tokenize",
]


def __getattr__(name: str) -> Any:
    """Import ``PackedCollator`` (and so torch) only when it is asked for."""
    if name == "PackedCollator":
        from longmagpie.integrations.torch import PackedCollator

        return PackedCollator
    raise AttributeError(f"module 'longmagpie' has no attribute {name!r}")
