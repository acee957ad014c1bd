"""The `longmagpie stats` report on harvests, plain QA tables, separate packing stages and hierarchical outputs.

Every figure is checked against what :mod:`longmagpie.measures` (or the tables themselves) say, on tables built
here with the real functions; nothing is mocked.
"""

from __future__ import annotations

import html
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.json as pj
import pyarrow.parquet as pq
import pytest
from support import make_samples, require

import longmagpie
from longmagpie import measures
from longmagpie.demo import DATA
from longmagpie.harvest.output import ROW_SCHEMA
from longmagpie.report import MEASURED_ROWS, SAMPLE_ANSWER_CHARS, SAMPLE_DOCUMENT_CHARS, render_html, summarize

require("matplotlib")  # the report extra: every test here renders or measures through longmagpie.report

LIGHTHOUSE = (
    "A lighthouse is a tower that carries a light to guide ships along dangerous coasts. Augustin Fresnel "
    "designed a lens of concentric glass prisms in 1822 that bent the light into a narrow horizontal beam. "
) * 4
VOLCANO = (
    "Mount Etna on Sicily is among the most active volcanoes on Earth. Its eruptions send lava flows down "
    "the slopes toward Catania, and farmers grow pistachios and grapes in the fertile volcanic soil. "
) * 3
BREAD = (
    "Sourdough bread rises with a starter of wild yeast and lactic acid bacteria. Bakers feed the starter "
    "flour and water, and the long fermentation gives the crumb its sour taste & open holes <b>bold</b>. "
)
CHESS = (
    "<script>alert('x')</script> The Sicilian Defence answers White's king pawn opening with the c-pawn. "
    "Grandmasters value its asymmetry: Black trades a central pawn for a wing pawn and counterplay."
)
GLACIER = "Glaciers carve valleys as ice flows downhill under its own weight, grinding bedrock into fine silt."
LONG_ANSWER = "A lens of concentric glass prisms that bends the light. " * 20

# (doc_id, context, query, answer) per shard, in shard order; shard 0 also read a document "c" that gave no row.
SHARDS: list[dict[str, Any]] = [
    {
        "documents": 3,
        "rows": [
            ("a", LIGHTHOUSE, "What lens did Augustin Fresnel design for the lighthouse?", LONG_ANSWER),
            ("a", LIGHTHOUSE, "In which year did Fresnel design his lens?", "In 1822."),
            ("b", VOLCANO, "Which crops grow in the volcanic soil around Mount Etna?", "Pistachios and grapes."),
        ],
    },
    {
        "documents": 3,
        "rows": [
            ("d", BREAD, "Why does sourdough taste sour & is <b>bold</b> > plain?", "Lactic acid bacteria."),
            ("e", CHESS, "How does the Sicilian Defence answer the king pawn opening?", "With the c-pawn <i>."),
            ("e", CHESS, "What are the benefits of regular exercise?", "Health."),
            ("g", GLACIER, "Explain how glaciers carve valleys.", "Ice grinds bedrock into silt."),
        ],
    },
]


def _shard_table(rows: list[tuple[str, str, str, str]], shard: int) -> pa.Table:
    n = len(rows)
    cols: dict[str, list[Any]] = {name: [None] * n for name in ROW_SCHEMA.names}
    for i, (doc, context, query, answer) in enumerate(rows):
        cols["id"][i] = f"{shard}-{i}"
        cols["doc_id"][i] = doc
        cols["context"][i] = context
        cols["query"][i] = query
        cols["answer"][i] = answer
        cols["sample"][i] = 0
        cols["query_candidate"][i] = i
        cols["context_tokens"][i] = len(context.split())
        cols["context_truncated"][i] = False
        cols["query_tokens"][i] = len(query.split()) + 1
        cols["answer_tokens"][i] = len(answer.split()) + 2
        cols["prompt_tokens"][i] = len(context.split()) + 10
        cols["query_grounding"][i] = measures.grounding(query, context)
        cols["answer_grounding"][i] = measures.grounding(answer, context)
        cols["model"][i] = "hand-written"
        cols["template"][i] = "chatml"
        cols["placement"][i] = "system"
        cols["query_temperature"][i] = 1.0
        cols["query_top_p"][i] = 1.0
        cols["answer_temperature"][i] = 0.7
        cols["answer_top_p"][i] = 0.95
        cols["seed"][i] = 0
        cols["query_finish_reason"][i] = "stop"
        cols["answer_finish_reason"][i] = "length" if len(answer) > 500 else "stop"
        cols["source_file"][i] = "documents.parquet"
        cols["source_row"][i] = i
    return pa.table(cols, schema=ROW_SCHEMA)


def _counts(shard: dict[str, Any], k: int) -> dict[str, int]:
    rows = len(shard["rows"])
    return {
        "rows": rows,
        "queries_generated": rows + 3 + k,
        "queries_accepted": rows + 1,
        "query_duplicate": 1 + k,
        "query_no_question_mark": 2,
        "doc_empty": k,
    }


@pytest.fixture
def harvest_dir(tmp_path: Path) -> Path:
    out = tmp_path / "harvest"
    out.mkdir()
    (out / "manifest.json").write_text(json.dumps({"format": 1, "fingerprint": "f", "parts": {}}))
    for k, shard in enumerate(SHARDS):
        docs, contexts, queries, answers = (list(x) for x in zip(*shard["rows"], strict=True))
        quality = measures.shard_quality(docs, contexts, queries, answers, shard["documents"])
        pq.write_table(_shard_table(shard["rows"], k), out / f"shard-{k:05d}.parquet")
        marker = {"fingerprint": "f", "shard": f"shard-{k:05d}", "counts": _counts(shard, k), "quality": quality}
        (out / f"shard-{k:05d}.done.json").write_text(json.dumps(marker))
    # A shard a killed run left without its marker: not part of the harvest.
    pq.write_table(
        _shard_table([("z", GLACIER, "Where do glaciers flow?", "Downhill.")], 2), out / "shard-00002.parquet"
    )
    return out


def test_harvest_quality_is_what_measures_computes(harvest_dir: Path) -> None:
    s = summarize([harvest_dir])
    assert len(s.harvest) == 1
    h = s.harvest[0]
    assert h.from_markers and h.files == 2 and h.unfinished_shards == 1
    rows = [r for shard in SHARDS for r in shard["rows"]]
    assert h.rows == s.totals["harvested rows"] == len(rows) == 7

    qualities = []
    counts: Counter[str] = Counter()
    for k, shard in enumerate(SHARDS):
        docs, contexts, queries, answers = (list(x) for x in zip(*shard["rows"], strict=True))
        qualities.append(measures.shard_quality(docs, contexts, queries, answers, shard["documents"]))
        counts.update(_counts(shard, k))
    q_tokens = [len(r[2].split()) + 1 for r in rows]
    a_tokens = [len(r[3].split()) + 2 for r in rows]
    expected = measures.summarize_quality(
        measures.merge_quality(qualities), counts, query_tokens=q_tokens, answer_tokens=a_tokens
    )
    assert h.summary == expected
    # The same figures by hand: 5 of 6 documents gave a row (c did not); 1 + 2 duplicates of 6 + 8 generated.
    assert h.summary["documents"] == 6 and h.summary["documents_with_rows"] == 5
    assert h.summary["document_yield"] == round(5 / 6, 4)
    assert h.summary["duplicate_rate"] == round(3 / (6 + 8), 4)
    assert h.summary["answer_acceptance"] == round(7 / 9, 4)
    own = [measures.grounding(q, c) for _, c, q, _ in rows]
    grounded = [g for g in own if g is not None]
    assert h.summary["query_grounding"] == pytest.approx(sum(grounded) / len(grounded), abs=1e-4)
    assert h.summary["query_grounding"] > h.summary["query_grounding_other"]
    assert h.openers == Counter(measures.opener(q) for _, _, q, _ in rows)
    assert sorted(h.query_grounding.tolist()) == sorted(g for g in own if g is not None)
    assert h.query_lengths.tolist() == q_tokens and h.answer_lengths.tolist() == a_tokens
    assert h.length_unit == "tokens"
    assert h.answer_finish_reasons == Counter({"stop": 6, "length": 1})
    assert s.harvest_counts["query_duplicate"] == 3 and s.harvest_counts["rows"] == 7

    page = render_html(s)
    assert "Harvest quality" in page
    assert f"{100 * expected['document_yield']:.1f} %" in page  # 83.3 %
    assert f"{100 * expected['query_grounding']:.1f} %" in page
    assert f"{100 * expected['query_grounding_other']:.1f} %" in page
    for title in ("Query lengths", "Answer lengths", "Question openers", "Query grounding in its own document"):
        assert title in page, title
    assert "unfinished shards" in page


def test_sample_rows_one_per_document_in_shard_order_and_escaped(harvest_dir: Path) -> None:
    s = summarize([harvest_dir])
    assert [x.doc_id for x in s.samples] == ["a", "b", "d", "e", "g"]  # first row per document, shard order
    first = s.samples[0]
    assert first.query == SHARDS[0]["rows"][0][2]
    assert first.document == LIGHTHOUSE[:SAMPLE_DOCUMENT_CHARS].rstrip() + "…"
    assert first.document_chars == len(LIGHTHOUSE)
    assert first.answer == LONG_ANSWER[:SAMPLE_ANSWER_CHARS].rstrip() + "…" and first.answer_chars == len(LONG_ANSWER)
    assert first.query_grounding == measures.grounding(first.query, LIGHTHOUSE)

    page = render_html(s)
    # Samples come before the totals, near the top of the page.
    assert page.index("Sample rows") < page.index("<h2>Totals")
    assert "<script>alert" not in page and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert html.escape("Why does sourdough taste sour & is <b>bold</b> > plain?") in page
    assert "<b>bold</b>" not in page and "With the c-pawn &lt;i&gt;." in page
    assert html.escape(SHARDS[0]["rows"][1][2]) not in page  # second row of document a: not a sample


def test_plain_qa_table_is_measured_on_the_fly(tmp_path: Path) -> None:
    qa = pj.read_json(DATA / "qa.jsonl")
    path = tmp_path / "qa.parquet"
    pq.write_table(qa, path)
    s = summarize([path])
    (h,) = s.harvest
    assert not h.from_markers and h.rows == h.measured_rows == qa.num_rows
    docs = qa.column("doc_id").to_pylist()
    contexts, queries, answers = (qa.column(c).to_pylist() for c in ("context", "query", "answer"))
    expected = measures.summarize_quality(
        measures.shard_quality(docs, contexts, queries, answers, len(set(docs))), None
    )
    expected["documents"] = expected["document_yield"] = None  # unknown without harvest markers
    assert h.summary == expected
    own = [g for q, c in zip(queries, contexts, strict=True) if (g := measures.grounding(q, c)) is not None]
    assert h.query_grounding.tolist() == own
    assert h.openers == Counter(measures.opener(q) for q in queries)
    assert h.length_unit == "characters" and h.query_lengths.tolist() == [len(q) for q in queries]
    assert h.summary["query_grounding"] > h.summary["query_grounding_other"]  # real questions about real documents
    assert len(s.samples) == min(6, len(set(docs)))
    assert s.samples[0].doc_id == docs[0] and s.samples[0].query == queries[0]
    page = render_html(s)
    assert "measured on the fly on the first" in page and html.escape(queries[0]) in page


def test_plain_table_without_doc_ids_measures_only_its_first_rows(tmp_path: Path) -> None:
    n = MEASURED_ROWS + 150
    contexts = [f"Document {i % 40} tells of the river Vltava{i % 40} and the castle of Prague." for i in range(n)]
    queries = [f"Which river{' ' if i % 3 else ''}flows past castle {i % 40}?" for i in range(n)]
    table = pa.table({"context": contexts, "query": queries, "answer": ["The Vltava."] * n})
    path = tmp_path / "plain.parquet"
    pq.write_table(table, path, row_group_size=500)
    (h,) = summarize([path]).harvest
    assert h.rows == n and h.measured_rows == MEASURED_ROWS
    own = [measures.grounding(q, c) for q, c in zip(queries[:MEASURED_ROWS], contexts[:MEASURED_ROWS], strict=True)]
    assert h.summary["query_grounding"] == round(sum(own) / len(own), 4)
    assert h.summary["documents_with_rows"] == 40
    assert h.openers == Counter({"which": MEASURED_ROWS})


def test_packed_pmixed_and_exported_rows_are_kept_apart(tmp_path: Path) -> None:
    samples = longmagpie.synthetic_samples(120_000, seed=3)
    packed = longmagpie.pack(samples, seq_len=4096, overflow="truncate")
    long = make_samples([3000, 1500, 2500] * 6)
    short = make_samples([300, 120, 700] * 30)
    pmix = longmagpie.pack_pmix(long, short, seq_len=4096, seed=1)
    pq.write_table(packed, tmp_path / "packed.parquet")
    pq.write_table(pmix, tmp_path / "pmix.parquet")
    # Without metadata, a p-mixed table is told by its `kind` column; with it, by the recorded op.
    pq.write_table(pmix.replace_schema_metadata(None), tmp_path / "pmix-bare.parquet")
    pq.write_table(pmix.drop_columns(["kind"]), tmp_path / "pmix-nokind.parquet")
    exported = longmagpie.export_parquet(packed, tmp_path / "dataset", overwrite=True)
    s = summarize([tmp_path])

    def tokens(t: pa.Table) -> int:
        return int(sum(t.column("length").to_pylist()))

    assert s.totals["packed rows"] == packed.num_rows
    assert s.totals["packed tokens"] == tokens(packed) == longmagpie.pack_stats(packed).output_tokens
    assert s.totals["p-mixed rows"] == 3 * pmix.num_rows
    assert s.totals["p-mixed tokens"] == 3 * tokens(pmix)
    assert s.totals["exported rows"] == exported.rows == packed.num_rows
    assert s.totals["exported tokens"] == exported.tokens
    assert s.totals["packed documents"] == sum(len(x) for x in packed.column("seq_lengths").to_pylist())
    assert {k: len(v) for k, v in s.files.items()} == {"packed": 1, "p-mixed": 3, "exported": len(exported.files)}
    assert s.stages["packed"].rows == packed.num_rows and s.stages["pmix"].rows == 3 * pmix.num_rows
    # Long/short shares come from the p-mixed tables that carry kinds (two of the three), once each.
    kinds = [k for row in pmix.column("kind").to_pylist() for k in row]
    assert s.kinds == Counter({k: 2 * v for k, v in Counter(kinds).items()})
    fill = s.stages["pmix"].mean_fill
    assert fill is not None and 0 < fill <= 1
    page = render_html(s)
    assert "Packing stages" in page and "p-mixed" in page and "exported" in page
    assert f"{packed.num_rows:,}" in page and f"{3 * pmix.num_rows:,}" in page


def test_hierarchical_targets_are_counted(tmp_path: Path) -> None:
    out = tmp_path / "hier"
    out.mkdir()
    plan = {4096: [(4000, 3, 7, 2), (3500, 2, 5, 1)], 8192: [(8000, 5, 12, 4)]}
    for target, convs in plan.items():
        ids = [list(range(n)) for n, *_ in convs]
        table = pa.table(
            {
                "input_ids": pa.array(ids, pa.list_(pa.int32())),
                "assistant_masks": pa.array([[0] * len(x) for x in ids], pa.list_(pa.int8())),
                "target_tokens": pa.array([target] * len(convs), pa.int64()),
                "num_tokens": pa.array([n for n, *_ in convs], pa.int64()),
                "num_documents": pa.array([d for _, d, _, _ in convs], pa.int32()),
                "num_qas": pa.array([q for _, _, q, _ in convs], pa.int32()),
                "num_revisits": pa.array([r for *_, r in convs], pa.int32()),
                "doc_ids": pa.array([[f"d{i}" for i in range(d)] for _, d, _, _ in convs], pa.list_(pa.string())),
                "qa_kinds": pa.array([["detail"] * q for _, _, q, _ in convs], pa.list_(pa.string())),
                "messages": pa.array(["[]"] * len(convs), pa.large_string()),
            }
        )
        pq.write_table(table, out / f"target-{target}.parquet")
    pq.write_table(table.slice(0, 0), out / "target-16384.parquet")
    s = summarize([out])
    assert sorted(s.hierarchical) == [4096, 8192, 16384]
    small = s.hierarchical[4096]
    assert (small.conversations, small.tokens, small.documents, small.qas, small.revisits) == (2, 7500, 5, 12, 3)
    assert (small.min_tokens, small.max_tokens) == (3500, 4000)
    assert s.hierarchical[16384].conversations == 0
    assert s.totals["hierarchical conversations"] == 3 and s.totals["hierarchical tokens"] == 15500
    assert "input samples" not in s.totals  # conversations are not counted as plain samples
    page = render_html(s)
    assert "Hierarchical conversations" in page and "7,500" in page
