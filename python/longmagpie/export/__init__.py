"""Exports of packed rows that trainers load unchanged: Hugging Face Parquet, MDS (streaming), Megatron-Bridge."""

from longmagpie.export.mds import export_mds
from longmagpie.export.nemo import export_nemo
from longmagpie.export.parquet import ExportResult, ShardLimits, export_parquet

__all__ = ["ExportResult", "ShardLimits", "export_mds", "export_nemo", "export_parquet"]
