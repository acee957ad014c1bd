"""Assembly: token ids equal the tokenizer's own rendering of the conversation, masks cover the answer only."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import require

import longmagpie
from longmagpie.assembly.assembler import UPSTREAM_SEPARATOR, AssembleConfig, Assembler, assemble
from longmagpie.templates.chat import LLAMA3_CHAT_TEMPLATE, QWEN25_CHAT_TEMPLATE
from longmagpie.templates.spans import TemplateError, chat_spans

# Qwen2.5's template with the assistant turn marked as a generation block (as TRL marks templates), so
# transformers can compute its own assistant mask to compare with ours.
QWEN25_GENERATION_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if message.role == 'assistant' %}"
    "{{- '<|im_start|>assistant\\n' }}{% generation %}{{- message.content + '<|im_end|>' }}{% endgeneration %}"
    "{{- '\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
)

LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
    r"|\s+(?!\S)|\s+"
)


@pytest.fixture(scope="module")
def qwen(qwen_tokenizer_dir: Path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(qwen_tokenizer_dir)
    assert tok.chat_template == QWEN25_CHAT_TEMPLATE
    return tok


@pytest.fixture(scope="module")
def llama_bpe(tmp_path_factory: pytest.TempPathFactory):
    """A byte-level BPE trained here on local text, with Llama-3's pre-tokenizer, specials and header template."""
    require("tokenizers")
    require("transformers")
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = [p.read_text(errors="ignore") for p in sorted(Path(pytest.__file__).parent.glob("*.py"))][:40]
    corpus += ["Ünïcödé façade naïve 東京 日本語 テキスト 12345 — “quotes” ‘single’ …\n\n\t end"] * 50
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    bpe.decoder = decoders.ByteLevel()
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=3000, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    bpe.train_from_iterator(corpus, trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>", pad_token="<|end_of_text|>"
    )
    tok.chat_template = LLAMA3_CHAT_TEMPLATE
    out = tmp_path_factory.mktemp("models") / "llama3-bpe"
    tok.save_pretrained(out)
    return PreTrainedTokenizerFast.from_pretrained(out)


def reference_ids(tok, messages) -> list[int]:
    out = tok.apply_chat_template(messages, tokenize=True, return_dict=True)
    return list(out["input_ids"])


def check_parity(tok, table: pa.Table) -> None:
    rows = table.select(["input_ids", "assistant_masks", "messages"]).to_pylist()
    assert rows, "nothing assembled"
    for i, row in enumerate(rows):
        ref = reference_ids(tok, row["messages"])
        assert row["input_ids"] == ref, f"row {i}: assembled ids differ from apply_chat_template"
        answer = row["messages"][-1]["content"]
        masked = [t for t, m in zip(row["input_ids"], row["assistant_masks"], strict=True) if m]
        decoded = tok.decode(masked)
        end = tok.eos_token
        assert decoded.endswith(end), (i, decoded)
        nfc = unicodedata.normalize  # the Qwen tokenizer normalizes to NFC, decoding gives NFC text
        assert nfc("NFC", decoded[: -len(end)]).strip() == nfc("NFC", answer).strip(), (i, decoded, answer)
        # The mask is one contiguous run ending on the end-of-turn token.
        m = row["assistant_masks"]
        first = m.index(1)
        assert all(m[first : first + len(masked)]) and sum(m) == len(masked)


# Text that stresses joins: unicode letters and marks, CJK, digits, punctuation runs, every kind of
# whitespace (incl. the separators Python's strip removes but Rust's would not), template-like markup.
ALPHABET = st.sampled_from(
    [
        *"abcXYZ éüßŁ東京日本語テキ0123456789.,;:!?'\"()-—…“”<>|=_#*/\\",
        *[" ", "  ", "\n", "\n\n", "\t", "\r\n", "\u00a0", "\u3000", "\u2028", "\x1c", "\x1f", "\u0301", "\u200b"],
        *["'s", "'ll", "===", "```", "http://x.y/z", " <|im_start|> ", "<|eot_id|>", "<|im_end|>"],
        # halves of special tokens: a join can spell one (the assembler then tokenizes the whole text)
        *["<|im_", "end|>", "<|eot", "_id|>"],
    ]
)
TEXT = st.lists(ALPHABET, min_size=0, max_size=40).map("".join)
DOC = TEXT.filter(lambda s: s.strip() != "" and s.strip("\x1c\x1d\x1e\x1f") != "")
SEPARATORS = st.sampled_from([UPSTREAM_SEPARATOR, "\n\n", "\n", "", " ", "---", "\n\n---\n\n", " \n"])


@st.composite
def corpora(draw):
    docs = draw(st.lists(DOC, min_size=1, max_size=6, unique=True))
    n = draw(st.integers(1, 6))
    rows = {
        "context": [draw(st.sampled_from(docs)) for _ in range(n)],
        "query": [draw(TEXT) for _ in range(n)],
        "answer": [draw(TEXT) for _ in range(n)],
    }
    return rows, draw(SEPARATORS), draw(SEPARATORS), draw(st.integers(0, 2**32))


def assemble_case(tok, case) -> pa.Table:
    """Assemble a drawn case (rows, separators, seed) with 0-4 distractors, messages kept, no token budget."""
    rows, doc_sep, query_sep, seed = case
    return assemble(
        pa.table(rows),
        tok,
        num_distractors=(0, 4),
        target_tokens=None,
        doc_separator=doc_sep,
        query_separator=query_sep,
        seed=seed,
        messages=True,
        max_tokens=1 << 16,
    )


PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.mark.slow
@PROPERTY
@given(corpora())
def test_parity_qwen25_real_tokenizer_and_template(qwen, case):
    rows = case[0]
    out = assemble_case(qwen, case)
    assert out.num_rows == len(rows["query"])
    check_parity(qwen, out)


@PROPERTY
@given(corpora())
def test_parity_llama3_headers_on_local_bpe(llama_bpe, case):
    rows = case[0]
    # Llama 3 trims every message: content that is only whitespace would vanish; keep answers non-blank.
    rows["answer"] = [a if a.strip() else "ok" for a in rows["answer"]]
    out = assemble_case(llama_bpe, case)
    check_parity(llama_bpe, out)
    # One BOS, from the template (no double BOS).
    bos = llama_bpe.bos_token_id
    assert all(r.count(bos) == 1 and r[0] == bos for r in out.column("input_ids").to_pylist())


def test_spans_of_real_templates(qwen, llama_bpe):
    s = chat_spans(qwen)
    assert s.prefix.startswith("<|im_start|>system\nYou are Qwen") and s.prefix.endswith("<|im_start|>user\n")
    assert s.user_to_answer == "<|im_end|>\n<|im_start|>assistant\n"
    assert (s.answer_end, s.suffix) == ("<|im_end|>", "\n")
    assert not s.trim_user and not s.trim_answer
    s = chat_spans(qwen, system="Be brief.")
    assert s.prefix == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n"
    s = chat_spans(llama_bpe)
    assert s.prefix == "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n"
    assert (s.answer_end, s.suffix, s.trim_user, s.trim_answer) == ("<|eot_id|>", "", True, True)


def test_mask_equals_transformers_generation_mask(qwen_tokenizer_dir):
    """With a template that marks the assistant's generation, transformers' own mask equals ours."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(qwen_tokenizer_dir)
    tok.chat_template = QWEN25_GENERATION_TEMPLATE
    samples = pa.table(
        {
            "context": ["Alpha doc.\n", "Beta doc with 42 numbers", "Gamma?\n\n"] * 3,
            "query": ["Why?", "", "How many?\n"] * 3,
            "answer": ["Because.", "\nLeading newline", "Forty-two  "] * 3,
        }
    )
    out = assemble(samples, tok, num_distractors=(0, 2), target_tokens=None, messages=True, system="S.")
    for row in out.to_pylist():
        ref = tok.apply_chat_template(
            row["messages"], tokenize=True, return_dict=True, return_assistant_tokens_mask=True
        )
        assert row["input_ids"] == list(ref["input_ids"])
        assert row["assistant_masks"] == list(ref["assistant_masks"])


def test_token_budget_targets_and_cap(qwen):
    words = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod".split()
    docs = [" ".join(words[(i + j) % len(words)] for j in range(20 + 7 * i)) + "." for i in range(40)]
    samples = pa.table({"context": docs, "query": [f"Question {i}?" for i in range(40)], "answer": ["Yes."] * 40})
    out = assemble(samples, qwen, target_tokens=(300, 600), max_tokens=700, seed=3, messages=True)
    lengths = [len(x) for x in out.column("input_ids").to_pylist()]
    assert max(lengths) <= 700
    # Distractors are drawn until the next one no longer fits: every sample ends near its target.
    assert min(lengths) >= 200, lengths
    assert sum(n > 1 for n in out.column("n_documents").to_pylist()) == 40
    check_parity(qwen, out)
    # The gold document is never its own distractor, and its position varies.
    for row in out.select(["messages", "gold_position", "n_documents"]).to_pylist():
        user = row["messages"][0 if row["messages"][0]["role"] == "user" else 1]["content"]
        parts = user.split(UPSTREAM_SEPARATOR)
        assert len(parts) == row["n_documents"] and len(set(parts[:-1])) == len(parts) - 1
    assert len(set(out.column("gold_position").to_pylist())) > 3


def test_deterministic_across_threads_and_batches(qwen):
    docs = [f"Document number {i} says {'many ' * (i % 7)}things.\n" for i in range(30)]
    samples = pa.table({"context": docs, "query": ["Q?"] * 30, "answer": ["A."] * 30, "id": list(range(30))})
    runs = [
        assemble(samples, qwen, target_tokens=(50, 400), seed=11, num_threads=t, batch_size=b)
        for t, b in ((1, 2048), (2, 7), (2, 1))
    ]
    for other in runs[1:]:
        assert other.equals(runs[0])
    different = assemble(samples, qwen, target_tokens=(50, 400), seed=12)
    assert not different.equals(runs[0])


def test_long_gold_document_truncated_in_the_middle_or_skipped(qwen):
    long_doc = " ".join(f"w{i}" for i in range(3000))
    samples = pa.table({"context": [long_doc, "short doc"], "query": ["Q?", "Q?"], "answer": ["A.", "A."]})
    out = assemble(samples, qwen, num_distractors=(0, 0), target_tokens=None, max_tokens=512, messages=True)
    stats = longmagpie.pack_metadata(out)["stats"]
    assert stats["truncated_documents"] == 1 and stats["truncated_tokens"] > 5000
    assert max(len(x) for x in out.column("input_ids").to_pylist()) <= 512
    user = out.column("messages").to_pylist()[0][-2]["content"]
    assert user.startswith("w0 w1 w2") and "w2999" in user and "w1500 " not in user
    check_parity(qwen, out)
    skipped = assemble(samples, qwen, num_distractors=(0, 0), target_tokens=None, max_tokens=512, long_documents="skip")
    assert skipped.num_rows == 1 and longmagpie.pack_metadata(skipped)["stats"]["skipped_long"] == 1


def test_documents_pool_by_id_and_separate_distractor_corpus(qwen):
    documents = pa.table({"doc_id": ["a", "b", "c"], "text": ["Text A.", "Text B.", "Text C."]})
    samples = pa.table({"doc_id": ["b", "a"], "query": ["Q1", "Q2"], "answer": ["A1", "A2"], "id": ["s1", "s2"]})
    distractors = pa.table({"doc_id": ["a", "x", "y"], "text": ["Text A.", "Other X.", "Other Y."]})
    out = Assembler(
        qwen, documents, distractors, AssembleConfig(num_distractors=(2, 2), target_tokens=None), messages=True
    ).assemble(samples)
    assert out.column("id").to_pylist() == ["s1", "s2"] and out.column("doc_id").to_pylist() == ["b", "a"]
    users = [m[-2]["content"] for m in out.column("messages").to_pylist()]
    assert "Text B." in users[0] and "Text C." not in users[0]
    # Sample 2's gold is "a": the corpus copy of "a" is excluded, so its distractors are X and Y.
    assert "Other X." in users[1] and "Other Y." in users[1] and users[1].count("Text A.") == 1
    check_parity(qwen, out)


def test_output_feeds_pack_and_survives_parquet(qwen, tmp_path):
    docs = [f"Doc {i}: " + "text " * (i * 5 + 1) for i in range(20)]
    samples = pa.table({"context": docs, "query": ["Q?"] * 20, "answer": ["Answer."] * 20})
    out = assemble(samples, qwen, target_tokens=(100, 300), max_tokens=400)
    pq.write_table(out, tmp_path / "a.parquet")
    back = pq.read_table(tmp_path / "a.parquet")
    assert back.equals(out)
    packed = longmagpie.pack(back, seq_len=1024)
    assert sum(packed.column("length").to_pylist()) == sum(len(x) for x in out.column("input_ids").to_pylist())


@pytest.mark.slow
def test_bad_input_errors_name_the_row_or_file(qwen, tmp_path):
    ok = {"context": ["d1", "d2"], "query": ["q", "q"], "answer": ["a", "a"]}
    with pytest.raises(KeyError, match="no column 'answer'"):
        assemble(pa.table({"context": ["d"], "query": ["q"]}), qwen)
    with pytest.raises(ValueError, match="row 1 has a null context"):
        assemble(pa.table({**ok, "context": ["d1", None]}), qwen)
    with pytest.raises(ValueError, match="row 1 is an empty document"):
        assemble(pa.table({**ok, "context": ["d1", "  \n"]}), qwen)
    with pytest.raises(ValueError, match="answer row 0 is null"):
        assemble(pa.table({**ok, "answer": [None, "a"]}), qwen)
    docs = pa.table({"doc_id": ["a"], "text": ["T"]})
    with pytest.raises(KeyError, match="samples row 1 names doc_id 'zz'"):
        assemble(pa.table({"doc_id": ["a", "zz"], "query": ["q", "q"], "answer": ["a", "a"]}), qwen, documents=docs)
    bad = tmp_path / "broken"
    bad.mkdir()
    (bad / "tokenizer.json").write_text("{not json")
    (bad / "tokenizer_config.json").write_text("{}")
    with pytest.raises(ValueError, match="broken"):
        assemble(pa.table(ok), bad)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        assemble(pa.table(ok), tmp_path / "nowhere")
    from transformers import AutoTokenizer

    no_user = AutoTokenizer.from_pretrained(qwen.name_or_path)
    no_user.chat_template = (
        "{% for m in messages %}{% if m.role == 'user' %}{{ raise_exception('no user role') }}{% endif %}{% endfor %}"
    )
    with pytest.raises(TemplateError, match="user"):
        assemble(pa.table(ok), no_user)
    with pytest.raises(ValueError, match="target_tokens"):
        assemble(pa.table(ok), qwen, target_tokens=(500, 100))


def test_cli_assemble_then_pack(qwen_tokenizer_dir, tmp_path):
    from typer.testing import CliRunner

    from longmagpie.cli import app

    docs = [f"Document {i}. " + "words " * (10 + i) for i in range(12)]
    pq.write_table(
        pa.table({"context": docs, "query": ["Q?"] * 12, "answer": ["A."] * 12, "id": list(range(12))}),
        tmp_path / "qa.parquet",
    )
    out = tmp_path / "assembled.parquet"
    runner = CliRunner()
    args = ["assemble", str(tmp_path / "qa.parquet"), "--tokenizer", str(qwen_tokenizer_dir), "-o", str(out)]
    result = runner.invoke(app, [*args, "--distractor-count", "1-3", "--messages"])
    assert result.exit_code == 0, result.output
    assert "assembled 12 of 12 samples" in result.output
    table = pq.read_table(out)
    assert table.column("id").to_pylist() == list(range(12))
    assert set(table.column("n_documents").to_pylist()) <= {2, 3, 4}
    # An existing output is kept without --overwrite; a bad count range is a clear error.
    again = runner.invoke(app, args)
    assert again.exit_code != 0 and "--overwrite" in again.output
    bad = runner.invoke(app, [*args, "--overwrite", "--distractor-count", "nine"])
    assert bad.exit_code != 0 and "MIN-MAX" in bad.output
    packed = tmp_path / "packed.parquet"
    result = runner.invoke(app, ["pack", str(out), "-o", str(packed), "--seq-len", "4096"])
    assert result.exit_code == 0, result.output


def test_tokenize_matches_the_tokenizer(qwen):
    texts = ["Hello!", "", None, "東京 12345\n\n  end", "<|im_end|> special"]
    ids = longmagpie.tokenize(texts, qwen, num_threads=2)
    assert ids.type == pa.list_(pa.field("item", pa.int32(), nullable=False))
    assert ids.to_pylist() == [None if t is None else qwen(t, add_special_tokens=False)["input_ids"] for t in texts]
    assert ids.to_pylist()[0] == [9707, 0]


@pytest.mark.slow
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(TEXT, TEXT), min_size=1, max_size=4), st.sampled_from([None, "Sys."]))
def test_multi_turn_conversations_match_the_template(qwen, llama_bpe, turns, system):
    conv = [m for u, a in turns for m in ({"role": "user", "content": u}, {"role": "assistant", "content": a})]
    for tok in (qwen, llama_bpe):
        if tok is llama_bpe:  # Llama 3 trims contents: keep them non-blank
            conv = [{**m, "content": m["content"] if m["content"].strip() else "x"} for m in conv]
        head = [] if system is None else [{"role": "system", "content": system}]
        convs = [head + conv, head + (conv[:-2] if len(conv) > 2 else conv)]
        out = longmagpie.encode_conversations(convs, tok, system=system)
        for row, msgs in zip(out.to_pylist(), convs, strict=True):
            assert row["input_ids"] == reference_ids(tok, msgs)
            mask = row["assistant_masks"]
            runs = sum(1 for i, m in enumerate(mask) if m and (i == 0 or not mask[i - 1]))
            assert runs == sum(1 for m in msgs if m["role"] == "assistant")  # one masked run per answer


def harvest_like(case_turns: list[list[tuple[str, str]]], docs: list[str]) -> pa.Table:
    """Multi-turn harvest rows: a document, the first exchange, and ``messages`` holding every exchange."""
    rows = []
    for k, turns in enumerate(case_turns):
        msgs = [{"role": "system", "content": docs[k % len(docs)]}]
        for u, a in turns:
            msgs += [{"role": "user", "content": u}, {"role": "assistant", "content": a}]
        rows.append({"context": docs[k % len(docs)], "query": turns[0][0], "answer": turns[0][1], "messages": msgs})
    messages_type = pa.list_(pa.struct([("role", pa.string()), ("content", pa.large_string())]))
    return pa.table(
        {
            "context": pa.array([r["context"] for r in rows], pa.large_string()),
            "query": [r["query"] for r in rows],
            "answer": pa.array([r["answer"] for r in rows], pa.large_string()),
            "messages": pa.array([r["messages"] for r in rows], messages_type),
        }
    )


@PROPERTY
@given(
    st.lists(st.lists(st.tuples(TEXT, TEXT), min_size=1, max_size=3), min_size=1, max_size=5),
    st.lists(DOC, min_size=2, max_size=6, unique=True),
    st.integers(0, 2**16),
)
def test_multi_turn_samples_equal_the_template_and_the_conversation_encoder(qwen, llama_bpe, turns, docs, seed):
    """Later turns join the assembled first exchange exactly: ids as apply_chat_template, masks as the encoder's."""
    for tok in (qwen, llama_bpe):
        case = turns
        if tok is llama_bpe:  # Llama 3 trims contents: keep them non-blank
            case = [[(u if u.strip() else "x", a if a.strip() else "y") for u, a in t] for t in turns]
        table = harvest_like(case, docs)
        out = assemble(table, tok, num_distractors=(0, 3), seed=seed, messages=True, max_tokens=4096)
        assert out.num_rows == table.num_rows
        rows = out.to_pylist()
        encoded = longmagpie.encode_conversations([r["messages"] for r in rows], tok).to_pylist()
        for k, (row, enc) in enumerate(zip(rows, encoded, strict=True)):
            assert len(row["messages"]) == 2 * len(case[k])
            assert [m["content"] for m in row["messages"][2:]] == [x for ex in case[k][1:] for x in ex]
            assert row["input_ids"] == reference_ids(tok, row["messages"]), f"row {k}"
            assert row["assistant_masks"] == enc["assistant_masks"], f"row {k}"
        stats = longmagpie.pack_metadata(out)["stats"]
        assert stats["later_turns"] == sum(len(t) - 1 for t in case)
        assert stats["output_tokens"] == sum(len(r["input_ids"]) for r in rows)


def test_multi_turn_later_turns_count_against_the_cap_and_single_turn_is_unchanged(qwen):
    docs = [f"Document {i}: " + "the river runs north past the old mill " * 6 for i in range(30)]
    one = harvest_like([[("Why does it run north?", "Because of the slope.")]] * 12, docs)
    many = harvest_like(
        [[("Why does it run north?", "Because of the slope."), ("And then?", "It meets the sea " * 20)]] * 12, docs
    )
    plain = assemble(one.drop_columns(["messages"]), qwen, target_tokens=(300, 400), max_tokens=400, seed=1)
    same = assemble(one, qwen, target_tokens=(300, 400), max_tokens=400, seed=1)
    assert same.column("input_ids").to_pylist() == plain.column("input_ids").to_pylist()
    out = assemble(many, qwen, target_tokens=(300, 400), max_tokens=400, seed=1)
    lengths = [len(x) for x in out.column("input_ids").to_pylist()]
    assert lengths and max(lengths) <= 400
    firsts = [len(x) for x in plain.column("input_ids").to_pylist()]
    assert sum(lengths) / len(lengths) < sum(firsts) / len(firsts) + 120  # distractors made room for the turn


def test_multi_turn_messages_of_the_wrong_type_are_named(qwen):
    table = pa.table({"context": ["doc"], "query": ["q"], "answer": ["a"], "messages": ['[{"role": "user"}]']})
    with pytest.raises(TypeError, match="'messages' must be a list of"):
        assemble(table, qwen, num_distractors=(0, 0))
