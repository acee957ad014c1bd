"""Quality measures of hierarchical runs: exact on hand-built states, consistent on a real (tiny-model) run."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import random
from pathlib import Path
from typing import Any

import pytest
from support.hierarchical import FEW_QAS, Counting, copy_output, doc_states, settings, write_docs

from longmagpie import measures
from longmagpie.hierarchical import HierarchicalConfig, QAItem, hierarchical_quality, synthesize
from longmagpie.hierarchical.generation import DocState, _material, load_state
from longmagpie.hierarchical.quality import _chunk_words, _span_words


def words(texts: list[str]) -> list[int]:
    """A whitespace 'tokenizer': the counts the hand-built states hold."""
    return [len(t.split()) for t in texts]


# chunk 1 ends inside "lantern", which chunk 2 finishes: only spans holding both chunks know the word
CHUNKS = ["Lighthouse lens design. ", "Fresnel built the lan", "tern room carefully."]


def lantern_state() -> DocState:
    return DocState(
        doc_id="lantern",
        text="".join(CHUNKS),
        small=list(CHUNKS),
        small_tokens=words(CHUNKS),  # 3, 4, 3
        medium=[[0, 1], [2]],
        qas=[
            QAItem("hierarchical", "global", [], question="Who built the lantern?", answer="Fresnel built it."),
            QAItem("hierarchical", "medium", [0], parent=0, question="What did Fresnel design?", answer="A lantern"),
            QAItem("local", "local", [2], question="How was the room built?", answer=" "),
            QAItem("multihop", "multihop", [0, 2], question="", answer="Lens rooms"),
            QAItem("diverse", "diverse", [-2], style="s", question="Why careful rooms?", answer="Because careful."),
        ],
        revisits=[QAItem("revisit", "global", [], question="Which lens?", answer="Fresnel lens")],
        stage="done",
        small_summaries=["lens design", "Fresnel lantern", ""],
        medium_summaries=["Fresnel designed a lighthouse lantern", "careful rooms"],
        global_summary="Fresnel lantern room",
        levels=[{"groups": [[0, 1]], "summaries": ["Fresnel lantern room"]}],
    )


def test_span_words_are_the_content_words_of_the_joined_chunks() -> None:
    """Cut anywhere (inside words, at spaces, chunks of one character or of punctuation only): still exact."""
    rng = random.Random(0)
    vocab = "lighthouse lens Fresnel's 1822 design-work naïve rooms a an of ... — foo_bar x9y".split()
    for trial in range(200):
        text = " ".join(rng.choice(vocab) for _ in range(rng.randint(0, 12))) + rng.choice(["", ".", " "])
        cuts = sorted(rng.sample(range(len(text) + 1), min(len(text) + 1, rng.randint(0, 6))))
        bounds = [0, *cuts, len(text)]
        chunks = [text[a:b] for a, b in itertools.pairwise(bounds)]
        parts = [_chunk_words(c) for c in chunks]
        for i in range(len(chunks)):
            for j in range(i, len(chunks)):
                span = range(i, j + 1)
                assert _span_words(parts, span) == measures.content_words("".join(chunks[i : j + 1])), (trial, span)


def test_summary_measures_are_exact_on_known_lengths_and_words() -> None:
    q = hierarchical_quality([lantern_state()], count_tokens=words)
    assert q["documents"] == 1 and q["unit"] == "tokens"
    assert list(q["summaries"]) == ["small", "medium", "global"]
    small, medium, glob = (q["summaries"][k] for k in ("small", "medium", "global"))

    # small: "lens design" (2 of 3 tokens, both words in chunk 0), "Fresnel lantern" (2 of 4; chunk 1 has only
    # "lan"), the third empty (counted, not measured)
    assert (small["summaries"], small["empty"]) == (3, 1)
    both = round((2 / 3 + 2 / 4) / 2, 4)
    assert small["compression"] == {"n": 2, "mean": both, "p50": both}
    assert small["grounding"] == {"n": 2, "mean": 0.75, "p50": 0.75}
    assert small["input_compression"] == small["compression"] and small["input_grounding"] == small["grounding"]

    # medium 0 stands for chunks 0-1 (7 tokens) and was written from two 2-token summaries: "designed" is not
    # "design", "lantern" is not in the text before chunk 2; medium 1 from an empty summary (no input length)
    both = round((5 / 7 + 2 / 3) / 2, 4)
    assert medium["compression"] == {"n": 2, "mean": both, "p50": both}
    assert medium["input_compression"] == {"n": 1, "mean": 1.25, "p50": 1.25}
    assert medium["grounding"] == {"n": 2, "mean": 0.5, "p50": 0.5}  # {fresnel, lighthouse} of 4; {room} of 2
    assert medium["input_grounding"] == {"n": 2, "mean": 0.25, "p50": 0.25}  # 2 of 4; nothing to ground in

    # global: the whole text joins "lan" + "tern"; 3 tokens of 10, of the medium summaries' 7
    assert glob["compression"] == {"n": 1, "mean": 0.3, "p50": 0.3}
    assert glob["input_compression"] == {"n": 1, "mean": round(3 / 7, 4), "p50": round(3 / 7, 4)}
    assert glob["grounding"]["mean"] == glob["input_grounding"]["mean"] == 1.0
    assert q["empty"] == {"summaries": 1, "questions": 1, "answers": 1}


def test_question_measures_are_exact_per_kind() -> None:
    state = lantern_state()
    q = hierarchical_quality([state], count_tokens=words)["questions"]
    assert list(q) == ["hierarchical", "local", "multihop", "diverse", "revisit", "all"]
    h = q["hierarchical"]
    assert (h["questions"], h["empty_questions"], h["empty_answers"]) == (2, 0, 0)
    # {built, lantern} in the global summary: lantern; {fresnel, design} in medium summary 0: fresnel
    assert h["question_grounding"] == {"n": 2, "mean": 0.5, "p50": 0.5}
    assert h["question_document_grounding"] == {"n": 2, "mean": 1.0, "p50": 1.0}
    assert h["answer_grounding"] == {"n": 2, "mean": 0.75, "p50": 0.75}  # {fresnel, built}: 1 of 2; {lantern}
    assert h["openers"] == {"what": 0.5, "who": 0.5}
    assert q["local"]["question_grounding"]["mean"] == 0.5 and q["local"]["empty_answers"] == 1
    assert q["local"]["answer_grounding"]["n"] == 0
    multihop = q["multihop"]
    assert multihop["empty_questions"] == 1 and multihop["openers"] == {} and multihop["question_grounding"]["n"] == 0
    assert multihop["answer_grounding"]["mean"] == 1.0  # lens (chunk 0), room (chunk 2)
    d = q["diverse"]  # about medium summary 1, "careful rooms"; the text says "carefully"
    assert (d["question_grounding"]["mean"], d["question_document_grounding"]["mean"]) == (1.0, 0.5)
    assert q["revisit"]["question_grounding"]["mean"] == 0.0 and q["revisit"]["answer_grounding"]["mean"] == 0.5
    every = q["all"]
    assert (every["questions"], every["empty_questions"], every["empty_answers"]) == (6, 1, 1)
    assert every["question_grounding"] == {"n": 5, "mean": 0.5, "p50": 0.5}
    assert every["openers"] == {"how": 0.2, "what": 0.2, "which": 0.2, "who": 0.2, "why": 0.2}
    # the measures' own grounding, on the material the prompts showed
    own = [measures.grounding(item.question or "", _material(state, item)) for item in (*state.qas, *state.revisits)]
    values = [g for g in own if g is not None]
    assert every["question_grounding"]["mean"] == round(math.fsum(values) / len(values), 4)


def test_levels_above_medium_are_named_by_depth_and_stand_for_their_chunks() -> None:
    chunks = ["alpha beta ", "gamma delta ", "epsilon zeta"]
    state = DocState(
        "deep",
        "".join(chunks),
        chunks,
        words(chunks),
        [[0], [1], [2]],
        [],
        [],
        stage="done",
        small_summaries=["alpha", "gamma", "zeta"],
        medium_summaries=["alpha", "gamma", "zeta"],
        global_summary="alpha zeta",
        levels=[
            {"groups": [[0, 1], [2]], "summaries": ["alpha gamma", "zeta omega"]},
            {"groups": [[0, 1]], "summaries": ["alpha zeta"]},
        ],
    )
    s = hierarchical_quality([state], count_tokens=words)["summaries"]
    assert list(s) == ["small", "medium", "level-3", "global"]
    # level 3: "alpha gamma" for chunks 0-1 (4 tokens), "zeta omega" for chunk 2 (2 tokens, omega not there)
    assert s["level-3"]["compression"] == {"n": 2, "mean": 0.75, "p50": 0.75}
    assert s["level-3"]["input_compression"] == {"n": 2, "mean": 1.5, "p50": 1.5}
    assert s["level-3"]["grounding"] == {"n": 2, "mean": 0.75, "p50": 0.75}
    assert s["global"]["compression"]["mean"] == round(2 / 6, 4)
    assert s["global"]["input_compression"]["mean"] == 0.5
    assert s["global"]["input_grounding"]["mean"] == 1.0

    # a state written before the tree (no levels): its global summary was written from every medium summary
    old = DocState.from_json({**state.to_json(), "levels": []})
    s_old = hierarchical_quality([old], count_tokens=words)["summaries"]
    assert list(s_old) == ["small", "medium", "global"]
    assert s_old["global"]["input_compression"]["mean"] == round(2 / 3, 4)


def test_characters_without_a_tokenizer_and_json_stable_and_order_free() -> None:
    a, b = lantern_state(), DocState.from_json({**lantern_state().to_json(), "doc_id": "other"})
    b.small_summaries = ["lighthouse", "built", "room"]
    q = hierarchical_quality([a])
    assert q["unit"] == "characters"
    first = len("lens design") / len(CHUNKS[0])
    second = len("Fresnel lantern") / len(CHUNKS[1])
    assert q["summaries"]["small"]["compression"]["mean"] == round((first + second) / 2, 4)
    both = hierarchical_quality([a, b], count_tokens=words)
    assert both == hierarchical_quality([b, a], count_tokens=words)
    assert json.loads(json.dumps(both)) == both
    assert both["documents"] == 2 and both["questions"]["all"]["questions"] == 12


# --- a real run (random weights: the text is gibberish, so structure only) ---

# the 600-word document (~11 small chunks, 6 medium) has a level between medium and global in this context;
# the last is shorter than one chunk
LENGTHS = [600, 250, 12]
OVERRIDES: dict[str, Any] = {"max_model_len": 256, "summary_max_tokens": 24, "targets": (1000,), **FEW_QAS}


@pytest.fixture(scope="module")
def run(engine: Any, tiny_qwen2_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("hier-quality")
    inputs = write_docs(tmp / "docs.parquet", LENGTHS)
    cfg = HierarchicalConfig(**settings(tiny_qwen2_dir, inputs, tmp / "out", **OVERRIDES))
    report = synthesize(cfg, engine=Counting(engine))
    return {"tmp": tmp, "inputs": inputs, "config": cfg, "report": report}


def test_a_run_records_its_quality_for_every_level_and_kind(run: dict[str, Any]) -> None:
    cfg: HierarchicalConfig = run["config"]
    quality = run["report"].quality
    out = Path(cfg.output_dir)
    assert json.loads((out / "quality.json").read_text()) == quality
    states = doc_states(out)
    assert quality["documents"] == len(states) == len(LENGTHS) and quality["unit"] == "tokens"
    levels = quality["summaries"]
    deeper = {f"level-{d}" for s in states.values() for d in range(3, len(s["levels"]) + 2)}
    assert "level-3" in deeper and list(levels) == ["small", "medium", *sorted(deeper), "global"]
    expected = {
        "small": sum(len(s["small_summaries"]) for s in states.values()),
        "medium": sum(len(s["medium_summaries"]) for s in states.values()),
        "global": len(states),
    }
    empty = 0
    for name, level in levels.items():
        if name in expected:
            assert level["summaries"] == expected[name]
        measured = level["summaries"] - level["empty"]
        assert measured > 0 and level["compression"]["n"] == measured
        for key in ("compression", "input_compression"):
            assert all(math.isfinite(level[key][v]) and level[key][v] > 0 for v in ("mean", "p50")), (name, key)
        for key in ("grounding", "input_grounding"):
            assert level[key]["n"] <= measured and (level[key]["n"] == 0 or 0 <= level[key]["mean"] <= 1)
        empty += level["empty"]
    texts = [t for s in states.values() for t in (*s["small_summaries"], *s["medium_summaries"])]
    texts += [t for s in states.values() for level in s["levels"] for t in level["summaries"]]
    assert empty == quality["empty"]["summaries"] == sum(1 for t in texts if not t.strip())

    qas = [q for s in states.values() for q in (*s["qas"], *s["revisits"])]
    questions = quality["questions"]
    assert list(questions) == ["hierarchical", "local", "multihop", "diverse", "revisit", "all"]
    for kind, per in questions.items():
        mine = qas if kind == "all" else [q for q in qas if q["kind"] == kind]
        assert per["questions"] == len(mine) > 0
        assert per["empty_questions"] == sum(1 for q in mine if not q["question"].strip())
        assert per["empty_answers"] == sum(1 for q in mine if not q["answer"].strip())
        if per["openers"]:
            assert math.isclose(sum(per["openers"].values()), 1.0, abs_tol=1e-3)
            assert set(per["openers"]) <= {*measures.OPENERS, "other"}
    assert questions["all"]["questions"] == len(LENGTHS) * (3 + 1 + 1 + 2 + 1)
    assert quality["empty"]["questions"] == questions["all"]["empty_questions"]
    # recomputed from the states on disk, the same
    states_back = [load_state(out / "documents", f"doc-{i}") for i in range(len(LENGTHS))]
    from longmagpie.assembly.assembler import load_tokenizer

    assert hierarchical_quality(states_back, load_tokenizer(cfg.model)) == quality


def test_a_rerun_that_resumes_every_document_measures_the_same(run: dict[str, Any], engine: Any) -> None:
    cfg: HierarchicalConfig = run["config"]
    out = copy_output(run, "out-rerun")
    (out / "quality.json").unlink()
    engine = Counting(engine)
    report = synthesize(dataclasses.replace(cfg, output_dir=str(out)), engine=engine)
    assert engine.calls == 0 and report.resumed_documents == len(LENGTHS)
    assert report.quality == run["report"].quality
    assert json.loads((out / "quality.json").read_text()) == report.quality
