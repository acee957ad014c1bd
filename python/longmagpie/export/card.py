"""The ``README.md`` dataset card written next to exported Parquet shards (Hugging Face format)."""

from __future__ import annotations

import json
import re
from typing import Any

import pyarrow as pa

from longmagpie import _core

#: Hugging Face split names (``datasets.splits``): word characters, dot-separated.
SPLIT_NAME = re.compile(r"^\w+(\.\w+)*$")

COLUMN_MEANING = {
    "input_ids": "token ids of the packed row",
    "seq_lengths": "tokens per document, in order; sums to the row length. Attention must not cross these "
    "boundaries: positions restart at 0 and each document's first token has no label",
    "assistant_masks": "1 = the token is trained on (assistant tokens), 0 = context",
    "seq_lengths_unpadded": "real tokens of each `seq_lengths` entry (written with `pad_documents_to`): each "
    "document is followed by padding up to a multiple, inside its entry (mask 0, label -100); 0 marks a row's "
    "padding segment. Padded and unpadded boundaries for context parallelism",
    "labels": "per-token labels, -100 = ignored",
    "loss_weights": "per-token loss weights (0 on untrained tokens and padding); with `per_sequence` each "
    "document's weights sum to 1",
    "length": "tokens in the row",
    "source": "source of each document (one entry per `seq_lengths` entry)",
    "kind": "p-mix kind of each segment: `long` or `short`",
}


def check_split(split: str) -> None:
    """Raise ``ValueError`` unless ``split`` is a valid Hugging Face split name."""
    if not isinstance(split, str) or not SPLIT_NAME.match(split):
        raise ValueError(f"split {split!r} is not a valid split name (letters, digits and _, e.g. 'train')")


def export_params(split: str | None, seq_len: int | None, limits: tuple[Any, ...], **extra: Any) -> dict[str, Any]:
    """Return the export settings a card (or another export's provenance file) records.

    ``limits`` is (rows_per_shard, shard_bytes, row_group_rows, row_group_bytes, compression_level) as
    :class:`~longmagpie.export.parquet.ShardLimits` resolved them; ``split`` is left out when ``None`` (an
    export without splits); ``extra`` settings follow the common ones.
    """
    rows_per_shard, shard_bytes, row_group_rows, row_group_bytes, compression_level = limits
    return {
        **({} if split is None else {"split": split}),
        "seq_len": seq_len,
        "rows_per_shard": rows_per_shard,
        "shard_bytes": shard_bytes,
        "row_group_rows": row_group_rows,
        "row_group_bytes": row_group_bytes,
        "compression": "zstd",
        "compression_level": compression_level,
        "longmagpie_version": _core.__version__,
        **extra,
    }


def render_card(
    split: str,
    shard_pattern: str,
    shards: list[str],
    schema: pa.Schema,
    totals: dict[str, int],
    pack_metadata: dict[str, Any] | None,
    export_params: dict[str, Any],
) -> str:
    """Return the card: YAML header (``configs``/``data_files``), loading, schema, packing and statistics.

    Nothing time-dependent is written, so the same export gives the same card.
    """
    lines = [
        "---",
        "configs:",
        "- config_name: default",
        "  data_files:",
        f"  - split: {split}",
        f'    path: "{shard_pattern}"',
        "tags:",
        "- longmagpie",
        "- packed",
        "- long-context",
        "---",
        "",
        "# Packed long-context training data",
        "",
        f"Packed by longmagpie {_core.__version__}: {totals['rows']:,} rows of at most "
        f"{export_params.get('seq_len') or '?'} tokens holding {totals['documents']:,} documents, "
        f"in {len(shards)} Parquet shard(s) (zstd) under `data/`. Every row keeps its document "
        "boundaries in `seq_lengths`: train with document-masked attention (padding-free / varlen), "
        "positions restarting at 0 in each document.",
        "",
        "## Loading",
        "",
        "```python",
        "from datasets import load_dataset",
        "",
        f'ds = load_dataset("path/to/this/folder", split="{split}")',
        f'# or: load_dataset("parquet", data_dir="path/to/this/folder", split="{split}")',
        "```",
        "",
        "With TRL: `SFTTrainer(..., train_dataset=ds, args=SFTConfig(padding_free=True, max_length=None))`; "
        "with a plain transformers `Trainer`: `data_collator=longmagpie.integrations.torch.PackedCollator()`.",
        "",
        "## Schema",
        "",
        "| column | type | meaning |",
        "|---|---|---|",
    ]
    for f in schema:
        lines.append(f"| `{f.name}` | `{f.type}` | {COLUMN_MEANING.get(f.name, '')} |")
    lines += ["", "## Statistics", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v:,} |" for k, v in totals.items()]
    lines += [f"| shards | {len(shards)} |", ""]
    lines += ["## How it was made", "", "Export:", "", "```json", json.dumps(export_params, indent=2, sort_keys=True)]
    lines += ["```", ""]
    if pack_metadata is not None:
        lines += [
            f"Packing (`longmagpie.{pack_metadata.get('op', '?')}`; parameters and statistics as recorded):",
            "",
            "```json",
            json.dumps(pack_metadata, indent=2, sort_keys=True),
            "```",
            "",
        ]
    lines += ["Shards:", ""] + [f"- `{s}`" for s in shards] + [""]
    return "\n".join(lines)
