"""Query-form classes (every rule), length buckets, and the seeded cap on a class's share: exact and stable."""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from fractions import Fraction

import pyarrow as pa
import pytest
from support import ipc_bytes

from longmagpie.quality.balance import (
    DEFAULT_TOKEN_EDGES,
    QUERY_FORM_RULES,
    QUERY_FORMS,
    balance,
    bucket_labels,
    length_bucket,
    query_form,
)

#: Hand-written queries per class; each rule of QUERY_FORM_RULES and each filler is hit by at least one.
QUERIES: dict[str, list[str]] = {
    "multiple_choice": [
        "Which of the following is true? A) The river froze B) The lake dried up",
        "What is the capital of the region?\n(a) Lyon\n(b) Grenoble\n(c) Annecy",
        "Pick the correct year: A. 1848 B. 1871 C. 1914",
        "Which author wrote the preface? Options: Smith, Jones, Brown",
        "Is the claim supported? a) yes b) no",  # options beat the yes/no opener
    ],
    "compare": [
        "Compare the two proposals for the new bridge.",
        "What is the difference between the first and the second survey?",
        "How does the new law differ from the old one?",
        "Apple versus Microsoft: who earned more in 1998?",
        "Contrast the methods used in the two studies.",
        "How is the northern dialect different from the southern one?",
        "List the differences between the two drafts.",  # compare beats list
    ],
    "list": [
        "List the main causes of the war.",
        "Could you enumerate the steps of the procedure?",
        "Name three characters who appear in the first chapter.",
        "What are the two main arguments of the author?",
        "Give me a list of the key dates in the report.",
        "Please identify all the people mentioned in the letter.",
    ],
    "imperative": [
        "Summarize the second chapter.",
        "Explain why the bridge collapsed.",
        "Can you describe the method used to date the samples?",  # a polite imperative, not yes/no
        "Please identify the main speaker in the transcript.",
        "Write a short poem about the harbour described in the text.",
        "Explain (a) why the river flooded and (b) how the town responded.",  # lettered parts are not options
        "Based on the passage, outline the plan of the expedition.",
    ],
    "what": [
        "What caused the flood in the lower town?",
        "Based on the document, what is the main finding?",
        "To what extent did prices rise after the reform?",
        "In 1990, what did the company sell abroad?",  # the opener after the first comma
        "WHAT DID THE COMMITTEE DECIDE?",
        "Question: what is the central idea of the essay?",
        "In contrast to the first study, what did the second one find?",  # "in contrast" is not compare
    ],
    "why": [
        "Why did the committee reject the plan?",
        "According to the text, why was the vote delayed?",
        "2. Why did the strike end so suddenly?",
        "Chapter 3: why did the captain leave the ship?",  # the opener after the first colon
    ],
    "how": [
        "How many people attended the ceremony?",
        "In the passage, how is the process of tanning described?",
        "how did the town pay for the new school?",
    ],
    "which": [
        "Which country won the cup in 1954?",
        "In which year was the bridge built?",
    ],
    "who": [
        "Who designed the bridge over the river?",
        "By whom was the letter written?",
        "Whose idea was the merger?",
        "When the war ended, who took power in the capital?",  # "when" opening a clause is not a when-question
    ],
    "when": [
        "When did the company move its headquarters?",
        "When was the treaty finally ratified, and by whom?",
    ],
    "where": [
        "Where was the treaty signed?",
        "From where did the settlers come?",
    ],
    "yes_no": [
        "Is the new drug more effective than the old one?",
        "Does the author support the reform?",
        "Can the results of the survey be trusted?",
        "Were the workers paid for the extra hours?",
        "Isn't the conclusion of the study premature?",
        "Don\u2019t the figures contradict the summary?",
        "True or false: the river froze in 1963.",
        "According to the report, should the plant be closed?",
    ],
    "other": [
        "The author describes a storm that destroyed the harbour.",
        "",
        "   ",
        "¿Qué dice el texto sobre la guerra?",
        "报告中的原因是什么？",
        "Island life in the story: a summary.",
    ],
}


def test_every_form_has_queries_and_every_class_is_documented():
    assert set(QUERIES) == set(QUERY_FORMS)
    assert {form for form, _, _ in QUERY_FORM_RULES} | {"other"} == set(QUERY_FORMS)


@pytest.mark.parametrize(("form", "query"), [(f, q) for f, qs in QUERIES.items() for q in qs])
def test_query_form(form, query):
    assert query_form(query) == form


def test_every_rule_is_used():
    """Each rule of QUERY_FORM_RULES is the first to match at least one of the hand-written queries."""
    import re

    from longmagpie.quality import balance as mod

    used = set()
    for qs in QUERIES.values():
        for q in qs:
            text = mod._normalize(q)
            if not text:
                continue
            opener = mod._skip_filler(text)
            rest = mod._skip_filler(mod._LEADING_JUNK.sub("", [*re.split(r"[,:;]", opener, maxsplit=1), ""][1]))
            for k, (_, scope, pattern) in enumerate(mod._COMPILED):
                on = q if scope == "raw" else text if scope == "text" else opener
                if (pattern.search(on) if scope != "opener" else pattern.match(on)) is not None:
                    used.add(k)
                    break
            else:
                for k, (_, scope, pattern) in enumerate(mod._COMPILED):
                    if scope == "opener" and pattern.match(rest):
                        used.add(k)
                        break
    assert used == set(range(len(QUERY_FORM_RULES)))


def test_length_buckets():
    assert bucket_labels() == ("<4k", "4k-16k", "16k-64k", "64k-256k", ">=256k")
    assert [length_bucket(n) for n in (0, 3_999, 4_000, 15_999, 16_000, 64_000, 255_999, 256_000, 10**7)] == [
        "<4k",
        "<4k",
        "4k-16k",
        "4k-16k",
        "16k-64k",
        "64k-256k",
        "64k-256k",
        ">=256k",
        ">=256k",
    ]
    assert bucket_labels((500, 2_000_000)) == ("<500", "500-2M", ">=2M")
    assert length_bucket(1_999, edges=(500, 2_000)) == "500-2k"
    assert bucket_labels(DEFAULT_TOKEN_EDGES) == ("<1k", "1k-4k", "4k-16k", "16k-64k", ">=64k")
    for bad in ((), (0, 10), (10, 10), (20, 10), (1.5,)):
        with pytest.raises(ValueError, match="edges"):
            length_bucket(5, edges=bad)
    with pytest.raises(ValueError, match="0 or more"):
        length_bucket(-1)


def rows(forms: dict[str, int], *, context_chars: list[int] | None = None) -> pa.Table:
    """Rows with ``forms[f]`` queries of form ``f`` (interleaved), an ``idx`` column to check order and identity."""
    templates = {
        "what": "What happened to item {i}?",
        "why": "Why did item {i} fail?",
        "how": "How was item {i} built?",
        "who": "Who made item {i}?",
        "list": "List the parts of item {i}.",
    }
    todo = [f for f, n in forms.items() for _ in range(n)]
    random.Random(7).shuffle(todo)
    n = len(todo)
    lengths = context_chars or [100] * n
    return pa.table(
        {
            "idx": list(range(n)),
            "doc_id": [f"doc{i % 4}" for i in range(n)],
            "context": ["x" * lengths[i] for i in range(n)],
            "query": [templates[f].format(i=i) for i, f in enumerate(todo)],
            "answer": ["an answer"] * n,
        }
    )


def shares(table: pa.Table, column: str = "query_form") -> dict[str, Fraction]:
    counts = Counter(table.column(column).to_pylist())
    return {k: Fraction(v, table.num_rows) for k, v in counts.items()}


def test_balance_without_cap_classifies_only():
    table = rows({"what": 3, "why": 2, "how": 1}, context_chars=[10, 5_000, 20_000, 70_000, 300_000, 0])
    out, report = balance(table)
    assert out.num_rows == 6 and out.column_names[-2:] == ["query_form", "context_bucket"]
    assert Counter(out.column("query_form").to_pylist()) == {"what": 3, "why": 2, "how": 1}
    assert out.column("context_bucket").to_pylist() == ["<4k", "4k-16k", "16k-64k", "64k-256k", ">=256k", "<4k"]
    assert report["removed"] == {} and report["cap"] is None
    assert report["before"] == report["after"]
    assert list(report["before"]["query_form"]) == list(QUERY_FORMS)  # every class, zeros included
    assert report["before"]["context_bucket"] == {"<4k": 2, "4k-16k": 1, "16k-64k": 1, "64k-256k": 1, ">=256k": 1}


def test_cap_keeps_exactly_these_rows():
    """6 what, 2 why, 2 how at max_share 0.4: t = 2 (2 <= 0.4 * 6; 3 > 0.4 * 7), so 2 of each stay."""
    table = rows({"what": 6, "why": 2, "how": 2})
    out, report = balance(table, max_share=0.4, seed=0)
    assert out.column("idx").to_pylist() == [0, 2, 4, 5, 6, 7]
    assert out.column("query").to_pylist() == [
        "How was item 0 built?",
        "What happened to item 2?",
        "Why did item 4 fail?",
        "What happened to item 5?",
        "How was item 6 built?",
        "Why did item 7 fail?",
    ]

    # the two "what" rows kept are those of smallest BLAKE2b key over length-prefixed (seed, doc_id, query)
    def key(seed: int, *parts: str) -> bytes:
        h = hashlib.blake2b(digest_size=8)
        for part in (str(seed), *parts):
            h.update(len(part.encode()).to_bytes(8, "little") + part.encode())
        return h.digest()

    whats = [r for r in table.to_pylist() if r["query"].startswith("What")]
    assert sorted(r["idx"] for r in sorted(whats, key=lambda r: key(0, r["doc_id"], r["query"]))[:2]) == [2, 5]
    assert report["cap"] == 2
    assert report["removed"] == {"balance:what": 4}
    assert report["rows_before"] == 10 and report["rows_after"] == 6
    assert {k: v for k, v in report["after"]["query_form"].items() if v} == {"what": 2, "why": 2, "how": 2}


def test_cap_iterates_to_the_exact_largest_selection():
    """50/30/10/10 at 0.3: one cut at 0.3 * 100 = 30 would leave 30/80 = 0.375; the exact cap is 15 of 50."""
    table = rows({"what": 50, "why": 30, "how": 10, "who": 10})
    out, report = balance(table, max_share=0.3)
    assert report["cap"] == 15 and out.num_rows == 50
    assert report["removed"] == {"balance:what": 35, "balance:why": 15}
    assert max(shares(out).values()) == Fraction(3, 10)  # exactly 0.3: the decimal value, not the float's
    assert Counter(out.column("query_form").to_pylist()) == {"what": 15, "why": 15, "how": 10, "who": 10}


@pytest.mark.parametrize("max_share", [0.26, 0.3, 0.45, 0.5, 0.7, 0.99, 1.0])
def test_cap_holds_and_keeps_order(max_share):
    table = rows({"what": 40, "why": 25, "how": 15, "who": 12, "list": 8})
    out, report = balance(table, max_share=max_share, seed=3)
    assert all(s <= Fraction(str(max_share)) for s in shares(out).values())
    idx = out.column("idx").to_pylist()
    assert idx == sorted(idx)
    assert report["rows_after"] == out.num_rows == report["rows_before"] - sum(report["removed"].values())
    assert {k: v for k, v in report["after"]["query_form"].items() if v} == Counter(
        out.column("query_form").to_pylist()
    )
    if max_share == 1.0:
        assert out.num_rows == 100 and report["removed"] == {}


def test_same_seed_same_bytes_other_seed_other_valid_selection():
    table = rows({"what": 30, "why": 10, "how": 10})
    one, r1 = balance(table, max_share=0.4, seed=1)
    two, r2 = balance(table, max_share=0.4, seed=1)
    assert ipc_bytes(one) == ipc_bytes(two) and r1 == r2
    other, r3 = balance(table, max_share=0.4, seed=2)
    assert other.column("idx").to_pylist() != one.column("idx").to_pylist()
    assert r3["removed"] == r1["removed"] and r3["after"] == r1["after"]  # same counts, other rows
    assert max(shares(other).values()) <= Fraction(2, 5)


def test_selection_depends_on_row_content_not_on_input_order():
    table = rows({"what": 30, "why": 10, "how": 10})
    order = list(range(table.num_rows))
    random.Random(0).shuffle(order)
    shuffled = table.take(pa.array(order))
    kept = set(balance(table, max_share=0.4)[0].column("idx").to_pylist())
    kept_shuffled = balance(shuffled, max_share=0.4)[0].column("idx").to_pylist()
    assert set(kept_shuffled) == kept
    assert kept_shuffled == [i for i in order if i in kept]  # the shuffled input's order


def test_cap_by_context_bucket_and_by_tokens():
    lengths = [100] * 12 + [5_000] * 4 + [20_000] * 4
    table = rows({"what": 10, "why": 10}, context_chars=lengths)
    out, report = balance(table, max_share=0.5, by="context_bucket")
    assert Counter(out.column("context_bucket").to_pylist()) == {"<4k": 8, "4k-16k": 4, "16k-64k": 4}
    assert report["removed"] == {"balance:<4k": 4}

    table = table.append_column("context_tokens", pa.array([n // 4 for n in lengths], pa.int32()))
    out, report = balance(table, by="context_bucket", length_column="context_tokens", edges=DEFAULT_TOKEN_EDGES)
    assert report["length"] == "context_tokens"
    assert Counter(out.column("context_bucket").to_pylist()) == {"<1k": 12, "1k-4k": 4, "4k-16k": 4}


def test_rerun_on_the_output_removes_nothing_and_replaces_the_columns():
    first, _ = balance(rows({"what": 30, "why": 10, "how": 5}), max_share=0.5)
    again, report = balance(first, max_share=0.5)
    assert report["removed"] == {} and again.column_names == first.column_names
    assert ipc_bytes(again) == ipc_bytes(first)


def test_nulls_and_an_empty_table():
    table = pa.table({"doc_id": ["a", None], "context": [None, "text"], "query": [None, "Why?"]})
    out, report = balance(table, max_share=1.0)
    assert out.column("query_form").to_pylist() == ["other", "why"]
    assert out.column("context_bucket").to_pylist() == ["<4k", "<4k"]
    empty, report = balance(table.slice(0, 0), max_share=0.5)
    assert empty.num_rows == 0 and report["rows_after"] == 0 and report["removed"] == {}


@pytest.mark.parametrize(
    ("kwargs", "drop", "message"),
    [
        ({"max_share": 0}, None, r"max_share must lie in \(0, 1\]"),
        ({"max_share": 1.5}, None, r"max_share must lie in \(0, 1\]"),
        ({"max_share": -0.2}, None, r"max_share must lie in \(0, 1\]"),
        ({"max_share": True}, None, "max_share must be a number"),
        ({"max_share": "0.5"}, None, "max_share must be a number"),
        ({"by": "answer"}, None, "by must be one of"),
        ({"seed": 1.5}, None, "seed must be an integer"),
        ({"edges": (10, 5)}, None, "edges must increase"),
        ({}, "query", "column 'query' is missing"),
        ({}, "context", "column 'context' is missing"),
        ({"max_share": 0.5}, "doc_id", "column 'doc_id' is missing"),
        ({"length_column": "context_tokens"}, None, "column 'context_tokens' is missing"),
        ({"length_column": "query"}, None, "column 'query' is string, not an integer column"),
    ],
)
def test_errors(kwargs, drop, message):
    table = rows({"what": 3, "why": 3})
    if drop:
        table = table.drop_columns([drop])
    with pytest.raises(ValueError, match=message):
        balance(table, **kwargs)


def test_a_share_no_selection_can_meet_is_an_error():
    with pytest.raises(ValueError, match=r"max_share=0.3 is below 1/3: 3 classes of query_form"):
        balance(rows({"what": 3, "why": 3, "how": 3}), max_share=0.3)
    out, report = balance(rows({"what": 5, "why": 3, "how": 2}), max_share=Fraction(1, 3))
    assert report["cap"] == 2 and out.num_rows == 6
