"""Scaling out: packing and p-mix as Ray Data transforms (``ray``) over deterministic Parquet windows (``windows``)."""
