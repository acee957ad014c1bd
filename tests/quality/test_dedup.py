"""Near-duplicate removal: planted edits found, distinct rows kept, the first row of a cluster kept, same result for
any batch size or thread count, options checked."""

from __future__ import annotations

import random

import pyarrow as pa
import pytest

from longmagpie.quality.dedup import NearDuplicates, candidate_probability, lsh_params

QUESTIONS = [
    "What does the report say about the cause of the flood in the northern valley last spring?",
    "Which two committees reviewed the budget proposal before the final vote was taken?",
    "How did the author describe the relationship between the glacier and the river delta?",
    "Why were the harbor workers opposed to the new shipping schedule announced in March?",
    "When was the first satellite launched from the coastal station mentioned in the text?",
    "Who proposed replacing the old reactor with a smaller design, and what was the reason given?",
    "What evidence does the study give that the enzyme slows the growth of the bacteria?",
    "According to the passage, what happened to the treaty after the election of the new senator?",
]


def planted(text: str, kind: str, rng: random.Random) -> str:
    words = text.split()
    if kind == "swap":
        i = rng.randrange(len(words) - 1)
        words[i], words[i + 1] = words[i + 1], words[i]
        return " ".join(words)
    if kind == "punctuation":
        return text.replace("?", " ?!").replace(",", ";")
    if kind == "case":
        return text.upper()
    if kind == "sentence":
        return text + " Please answer briefly."
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["swap", "punctuation", "case", "sentence"])
def test_planted_near_duplicates_point_at_their_original(kind: str) -> None:
    rng = random.Random(0)
    rows = QUESTIONS + [planted(q, kind, rng) for q in QUESTIONS]
    d = NearDuplicates(shingle=2, threshold=0.6)
    dup = d.add(pa.array(rows)).dup_of.to_pylist()
    assert dup[: len(QUESTIONS)] == [-1] * len(QUESTIONS)  # distinct questions are all kept
    assert dup[len(QUESTIONS) :] == list(range(len(QUESTIONS)))  # each copy names its own original


def test_the_earliest_row_of_a_cluster_is_kept_and_similarity_is_exact() -> None:
    q = QUESTIONS[0]
    rows = [q.lower(), QUESTIONS[1], q, q + " Explain."]
    d = NearDuplicates(shingle=2, threshold=0.6)
    out = d.add(pa.array(rows))
    assert out.dup_of.to_pylist() == [-1, -1, 0, 0]
    sims = out.similarity.to_pylist()
    assert sims[2] == 1.0 and 0.6 <= sims[3] < 1.0
    assert d.rows_seen == 4 and d.memory_bytes > 0


def test_nulls_and_texts_without_words_are_kept_and_counted() -> None:
    d = NearDuplicates(shingle=2, threshold=0.6)
    out = d.add(pa.array([None, "?!", QUESTIONS[0], "...", None]))
    assert out.dup_of.to_pylist() == [-1] * 5 and out.empty == 4


def test_same_decisions_for_any_batch_size_and_thread_count() -> None:
    rng = random.Random(1)
    rows = [planted(rng.choice(QUESTIONS), rng.choice(["swap", "case", "sentence"]), rng) for _ in range(400)]
    rows += QUESTIONS

    def run(batch: int, threads: int) -> list[int]:
        d = NearDuplicates(shingle=2, threshold=0.6, seed=3, num_threads=threads)
        dup: list[int] = []
        for start in range(0, len(rows), batch):
            dup += d.add(pa.array(rows[start : start + batch])).dup_of.to_pylist()
        return dup

    first = run(len(rows), 1)
    assert first == run(7, 2) == run(1, 2)
    assert sum(1 for x in first if x < 0) < 60  # 400 edited copies of 8 questions collapse onto few kept rows


def test_large_strings_and_chunked_arrays_are_read() -> None:
    d = NearDuplicates(shingle=2, threshold=0.6)
    chunked = pa.chunked_array([pa.array(QUESTIONS[:2], pa.large_string()), pa.array(QUESTIONS[:1], pa.large_string())])
    assert d.add(chunked).dup_of.to_pylist() == [-1, -1, 0]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"threshold": 0.0}, r"threshold must be in \(0, 1\]"),
        ({"threshold": 1.5}, r"threshold must be in \(0, 1\]"),
        ({"threshold": 0.5, "bands": 4}, "give both bands and rows"),
        ({"threshold": 0.5, "num_perm": 0}, "num_perm must be an int"),
        ({"threshold": 0.5, "shingle": 0}, "shingle must be >= 1"),
    ],
)
def test_bad_options_are_named(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        NearDuplicates(**{"shingle": 2, **kwargs})


def test_a_column_of_numbers_is_refused_with_its_name() -> None:
    d = NearDuplicates(shingle=2, threshold=0.6)
    with pytest.raises(ValueError, match="query"):
        d.add(pa.array([1, 2]), "query")


def test_lsh_parameters_find_pairs_at_the_threshold() -> None:
    for threshold in (0.5, 0.6, 0.72, 0.8, 0.9):
        bands, rows = lsh_params(threshold, 128)
        assert bands * rows <= 128
        assert candidate_probability(threshold, bands, rows) >= 0.6  # a pair at the threshold is usually found
        assert candidate_probability(min(threshold + 0.1, 1.0), bands, rows) >= 0.9
        assert candidate_probability(threshold / 3, bands, rows) < 0.2  # far-apart pairs are rarely checked
