"""③ Packing: samples become fixed-size rows with per-document boundaries.

``pack``, ``stream`` (inputs larger than memory) and long/short mixes (``pmix``).
"""

from longmagpie.packing.pack import PackStats, pack, pack_from_plan, pack_plan, pack_stats
from longmagpie.packing.pmix import PmixPackedStream, PmixStats, pack_pmix, pack_pmix_stream, pmix_stats
from longmagpie.packing.stream import PackedStream, pack_stream

__all__ = [
    "PackStats",
    "PackedStream",
    "PmixPackedStream",
    "PmixStats",
    "pack",
    "pack_from_plan",
    "pack_plan",
    "pack_pmix",
    "pack_pmix_stream",
    "pack_stats",
    "pack_stream",
    "pmix_stats",
]
