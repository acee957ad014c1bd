"""①½ Quality: what harvest made, filtered before assembly (decontamination, language, near-duplicates, balance).

:func:`quality` runs the steps over a table of harvest rows; ``longmagpie quality`` and the ``[quality]`` stage of
``longmagpie run`` run it over files. The steps on their own: :class:`~longmagpie.quality.dedup.NearDuplicates`
(streaming MinHash + LSH, exact Jaccard), :class:`~longmagpie.quality.decontaminate.EvalIndex` (word n-grams of
evaluation sets), :mod:`longmagpie.quality.language` (offline detection) and :mod:`longmagpie.quality.balance`
(query forms, context buckets, capped shares).
"""

from longmagpie.quality.decontaminate import EvalIndex
from longmagpie.quality.dedup import NearDuplicates
from longmagpie.quality.stage import INPUT_ROW, QualityConfig, QualityResult, quality, quality_files

__all__ = ["INPUT_ROW", "EvalIndex", "NearDuplicates", "QualityConfig", "QualityResult", "quality", "quality_files"]
