"""I/O: local and remote paths (``storage``: s3://, gs://, hf://, memory://), reads and atomic writes (``files``)."""
