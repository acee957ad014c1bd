"""Decontamination: rows sharing a word 13-gram with an evaluation file are found and attributed to the first file;
short evaluation questions are found whole; bad evaluation files are named before anything is read."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from longmagpie.quality.decontaminate import EvalIndex, eval_texts

MMLU_LIKE = "Which of the following best describes the primary function of the mitochondria in eukaryotic cells"


def test_a_shared_13_gram_is_found_whatever_the_case_and_punctuation(tmp_path: Path) -> None:
    evals = tmp_path / "mmlu.jsonl"
    evals.write_text(json.dumps({"question": MMLU_LIKE, "choices": ["energy", "storage"]}) + "\n")
    index = EvalIndex([evals])
    texts = pa.array(
        [
            "Here is a question: WHICH of the following, best describes the primary function of the mitochondria "
            "in eukaryotic cells? Answer it.",
            "Which of the following best describes the primary function of the nucleus in plant cells",  # 9 shared
            "the storage of energy",  # a one-word choice ("storage") is too short to index
            "nothing in common",
        ]
    )
    assert index.first_match(texts, "query").to_pylist() == [0, -1, -1, -1]
    assert index.skipped == [2]


def test_a_short_question_is_found_whole(tmp_path: Path) -> None:
    evals = tmp_path / "short.txt"
    evals.write_text("What is the capital city of the country France?\n")  # 9 words: indexed whole
    index = EvalIndex([evals])
    found = index.first_match(pa.array(["Q: what is the capital city of the country France", "the capital"]), "query")
    assert found.to_pylist() == [0, -1]


def test_rows_are_attributed_to_the_first_file_and_every_column_is_checked(tmp_path: Path) -> None:
    a = tmp_path / "a.txt"
    a.write_text(
        "the quick brown fox jumps over the lazy dog near the old mill by the river\n\n"
        "this is the second line of the file a\n"
    )
    b = tmp_path / "b.parquet"
    pq.write_table(pa.table({"prompt": ["the quick brown fox jumps over the lazy dog near the old mill"]}), b)
    index = EvalIndex([b, a], ngram=13)
    assert index.texts == [1, 2]
    table = pa.table(
        {
            "query": ["the quick brown fox jumps over the lazy dog near the old mill", "a question", "q"],
            "context": ["doc", "doc with this is the second line of the file a inside", "doc"],
        }
    )
    assert index.match_table(table, ["query", "context"]) == [0, 1, -1]


@pytest.mark.parametrize(
    ("name", "content", "error", "match"),
    [
        ("empty.txt", "\n\n", ValueError, "holds no text"),
        ("bad.jsonl", '{"q": "x"}\nnot json\n', ValueError, r"bad.jsonl:2: not a JSON line"),
        ("evals.csv", "a,b\n", ValueError, "unknown format '.csv'"),
    ],
)
def test_bad_evaluation_files_are_named(tmp_path: Path, name: str, content: str, error: type, match: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(error, match=match):
        eval_texts(path)
    with pytest.raises(error, match=match):
        EvalIndex([path])


def test_a_missing_file_and_no_file_are_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"missing\.jsonl does not exist"):
        EvalIndex([tmp_path / "missing.jsonl"])
    with pytest.raises(ValueError, match="no evaluation file"):
        EvalIndex([])
    (tmp_path / "e.txt").write_text("x\n")
    with pytest.raises(ValueError, match="ngram must be a positive int"):
        EvalIndex([tmp_path / "e.txt"], ngram=0)
    with pytest.raises(ValueError, match="none of its 1 texts has 8 words or more"):
        EvalIndex([tmp_path / "e.txt"])
