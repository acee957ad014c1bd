"""The harvest's rows: their schema and :func:`read_harvest` (directory layout: :mod:`longmagpie.generate.resume`)."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from longmagpie.generate.resume import MANIFEST

ROW_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("doc_id", pa.string()),
        ("context", pa.large_string()),
        ("query", pa.string()),
        ("answer", pa.large_string()),
        ("sample", pa.int32()),
        ("query_candidate", pa.int32()),
        ("answer_candidate", pa.int32()),
        ("context_tokens", pa.int32()),
        ("context_truncated", pa.bool_()),
        ("query_tokens", pa.int32()),
        ("answer_tokens", pa.int32()),
        ("prompt_tokens", pa.int32()),
        ("query_grounding", pa.float64()),
        ("answer_grounding", pa.float64()),
        ("model", pa.string()),
        ("template", pa.string()),
        ("placement", pa.string()),
        ("query_temperature", pa.float64()),
        ("query_top_p", pa.float64()),
        ("answer_temperature", pa.float64()),
        ("answer_top_p", pa.float64()),
        ("seed", pa.int64()),
        ("query_finish_reason", pa.string()),
        ("answer_finish_reason", pa.string()),
        ("source_file", pa.string()),
        ("source_row", pa.int64()),
    ]
)


#: A conversation as rows carry it: ``{role, content}`` messages (Hugging Face's conversational format).
MESSAGES_TYPE = pa.list_(pa.struct([("role", pa.string()), ("content", pa.large_string())]))

#: Columns a multi-turn harvest (``turns > 1``) adds after :data:`ROW_SCHEMA`'s: the conversation as trained (the
#: document first, as the prompts placed it; then every accepted question and answer), the exchanges it holds, and
#: why it ended (``complete``, ``query_rejected``, ``answer_rejected``), and the mean grounding of its follow-up
#: questions in the document (:func:`longmagpie.measures.grounding`; null without a follow-up or content words).
TURN_FIELDS = (
    pa.field("messages", MESSAGES_TYPE),
    pa.field("turns", pa.int32()),
    pa.field("turns_ended", pa.string()),
    pa.field("followup_grounding", pa.float64()),
)

#: The column a steered harvest adds: the instruction the row's questions were asked under.
STEER_FIELD = pa.field("steer", pa.string())


def row_schema(turns: int = 1, steered: bool = False) -> pa.Schema:
    """Return the schema of a harvest's rows.

    :data:`ROW_SCHEMA`, plus :data:`TURN_FIELDS` when ``turns > 1`` and :data:`STEER_FIELD` when steered (so
    ``turns=1`` unsteered rows are what they always were).
    """
    fields = list(ROW_SCHEMA)
    if turns > 1:
        fields += TURN_FIELDS
    if steered:
        fields.append(STEER_FIELD)
    return pa.schema(fields)


def directory_schema(out_dir: str | os.PathLike[str]) -> pa.Schema:
    """Return the row schema of a harvest directory, from its manifest's settings (``turns``, ``steer``)."""
    import json

    config = json.loads((Path(out_dir) / MANIFEST).read_text()).get("parts", {}).get("config", {})
    return row_schema(int(config.get("turns", 1)), bool(config.get("steer")))


def read_harvest(out_dir: str | os.PathLike[str]) -> pa.Table:
    """All finished shards of a harvest directory, in shard order, as one table."""
    out = Path(out_dir)
    if not (out / MANIFEST).is_file():
        raise FileNotFoundError(f"{out} has no {MANIFEST}: not a harvest output directory")
    keys = sorted(p.name[: -len(".done.json")] for p in out.glob("shard-*.done.json"))
    schema = directory_schema(out)
    tables = [pq.read_table(out / f"{k}.parquet", schema=schema) for k in keys]
    return pa.concat_tables(tables) if tables else schema.empty_table()
