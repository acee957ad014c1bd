"""Exports of packed rows that trainers load unchanged: Hugging Face Parquet and MDS (mosaicml-streaming)."""

from longmagpie.export.mds import export_mds
from longmagpie.export.parquet import ExportResult, ShardLimits, export_parquet

__all__ = ["ExportResult", "ShardLimits", "export_mds", "export_parquet"]
