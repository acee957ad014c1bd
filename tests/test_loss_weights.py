"""``loss_weights``: per-token weights written by the packers, carried by the exports, applied by the collator."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import ipc_bytes, make_samples, require

import longmagpie


def row_documents(table: pa.Table) -> list[dict[str, np.ndarray]]:
    """Every document (and pad segment) of every row: its mask, labels (if any) and weights."""
    out = []
    names = table.schema.names
    for row in table.to_pylist():
        at = 0
        for n in row["seq_lengths"]:
            part = slice(at, at + n)
            doc = {"mask": np.array(row["assistant_masks"][part]), "w": np.array(row["loss_weights"][part], np.float32)}
            if "labels" in names:
                doc["labels"] = np.array(row["labels"][part])
            out.append(doc)
            at += n
    return out


def trained(doc: dict[str, np.ndarray]) -> np.ndarray:
    keep = doc["mask"] == 1
    if "labels" in doc:
        keep &= doc["labels"] != -100
    keep[:1] = False  # a document's first token is predicted by no token of it
    return keep


@settings(max_examples=40, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 90), max_size=30),
    seq_len=st.integers(8, 120),
    labels=st.booleans(),
    pad=st.booleans(),
)
def test_per_sequence_weights_sum_to_one_per_trained_document(
    lengths: list[int], seq_len: int, labels: bool, pad: bool
) -> None:
    samples = make_samples(lengths, labels=labels)
    options = {"seq_len": seq_len, "overflow": "split", "pad_to": seq_len + 4 if pad else None}
    table = longmagpie.pack(samples, loss_weights="per_sequence", **options)
    assert table.schema.field("loss_weights").type == pa.list_(pa.float32())
    for doc in row_documents(table):
        keep = trained(doc)
        assert (doc["w"][~keep] == 0).all()
        if keep.any():
            assert doc["w"][keep] == pytest.approx(np.full(keep.sum(), 1 / keep.sum()), rel=1e-6)
            assert float(doc["w"].sum()) == pytest.approx(1.0, rel=1e-5)
    per_token = longmagpie.pack(samples, loss_weights="per_token", **options)
    for doc in row_documents(per_token):
        assert (doc["w"] == trained(doc).astype(np.float32)).all()
    # The other columns are pack's without weights, byte for byte.
    plain = longmagpie.pack(samples, **options)
    assert ipc_bytes(table.drop_columns(["loss_weights"]).replace_schema_metadata(None)) == ipc_bytes(
        plain.replace_schema_metadata(None)
    )
    assert longmagpie.pack_metadata(table)["params"]["loss_weights"] == "per_sequence"


def test_every_packer_writes_the_same_weights() -> None:
    samples = make_samples([30, 200, 45, 7, 120, 66, 3, 90], labels=True)
    table = longmagpie.pack(samples, seq_len=256, loss_weights="per_sequence")
    streamed = longmagpie.pack_stream(samples, seq_len=256, loss_weights="per_sequence", window_tokens=10**6)
    assert ipc_bytes(streamed.read_all().replace_schema_metadata(None)) == ipc_bytes(
        table.replace_schema_metadata(None)
    )
    plan = longmagpie.pack_plan(samples, seq_len=256, loss_weights="per_sequence")
    assert ipc_bytes(longmagpie.pack_from_plan(samples, plan)) == ipc_bytes(table)
    mixed = longmagpie.pack_pmix(
        samples, make_samples([5, 9, 12, 4], labels=True), seq_len=256, loss_weights="per_sequence"
    )
    assert "kind" in mixed.schema.names
    for doc in row_documents(mixed):
        keep = trained(doc)
        assert (doc["w"][~keep] == 0).all() and (not keep.any() or float(doc["w"].sum()) == pytest.approx(1.0))
    stream = longmagpie.pack_pmix_stream(
        samples, make_samples([5, 9, 12, 4], labels=True), seq_len=256, loss_weights="per_token"
    )
    assert "loss_weights" in stream.read_all().schema.names


def test_a_bad_scheme_is_refused_before_reading() -> None:
    with pytest.raises(ValueError, match="unknown loss_weights 'per_doc'; expected one of 'per_sequence', 'per_token'"):
        longmagpie.pack(make_samples([3]), seq_len=8, loss_weights="per_doc")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown loss_weights"):
        longmagpie.PmixOptions(loss_weights="sqrt")  # type: ignore[arg-type]


def test_exports_carry_the_weights(tmp_path) -> None:
    samples = make_samples([30, 200, 45, 7, 120, 66], labels=True)
    table = longmagpie.pack(samples, seq_len=256, loss_weights="per_sequence")
    longmagpie.export_parquet(table, tmp_path / "hf")
    back = pq.read_table(tmp_path / "hf" / "data")
    assert back.column("loss_weights").to_pylist() == table.column("loss_weights").to_pylist()

    longmagpie.export_nemo(table, tmp_path / "nemo")
    nemo = pq.read_table(sorted((tmp_path / "nemo").glob("*.parquet"))[0])
    for src, row in zip(table.to_pylist(), nemo.to_pylist(), strict=True):
        w, rolled = np.array(src["loss_weights"], np.float32), np.array(row["loss_weights"], np.float32)
        starts = np.cumsum([0, *src["seq_lengths"]])
        for a, b in itertools.pairwise(starts):
            # rolled as loss_mask: input i carries the weight of its label, token i + 1; 0 on a document's last token
            assert (rolled[a : b - 1] == w[a + 1 : b]).all() and rolled[b - 1] == 0
        assert ((rolled > 0) <= (np.array(row["loss_mask"]) == 1)).all()

    streaming = require("streaming")
    longmagpie.export_mds(table, tmp_path / "mds")
    index = json.loads((tmp_path / "mds" / "index.json").read_text())
    assert "loss_weights" in index["shards"][0]["column_names"]
    dataset = streaming.StreamingDataset(local=str(tmp_path / "mds"), shuffle=False, batch_size=1)
    for i, src in enumerate(table.to_pylist()):
        assert dataset[i]["loss_weights"].dtype == np.float32
        assert dataset[i]["loss_weights"].tolist() == pytest.approx(src["loss_weights"])


def test_the_collator_and_weighted_loss_give_the_mean_of_document_means(tiny_qwen2_dir) -> None:
    torch = require("torch")
    transformers = require("transformers")
    from longmagpie.integrations.torch import PackedCollator, weighted_loss

    samples = make_samples([30, 200, 45, 7, 120, 66], labels=True)
    samples = samples.set_column(
        0,
        "input_ids",
        pa.array([[t % 5000 for t in r] for r in samples["input_ids"].to_pylist()], pa.list_(pa.int32())),
    )
    samples = samples.drop_columns(["labels"])
    table = longmagpie.pack(samples, seq_len=256, loss_weights="per_sequence")
    batch = PackedCollator()(table.to_pylist())
    plain = PackedCollator()(table.drop_columns(["loss_weights"]).to_pylist())
    assert "loss_weights" not in plain and torch.equal(plain["labels"], batch["labels"])
    w = batch["loss_weights"]
    assert w.shape == batch["labels"].shape and (w[batch["labels"] == -100] == 0).all()
    model = transformers.AutoModelForCausalLM.from_pretrained(tiny_qwen2_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        model.get_input_embeddings().weight.mul_(8.0)
        logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
    loss = weighted_loss(logits, batch["labels"], w)
    # Reference: each document's mean loss over its trained labels, averaged over the documents.
    ce = torch.nn.functional.cross_entropy(logits[0, :-1], batch["labels"][0, 1:], ignore_index=-100, reduction="none")
    labels = batch["labels"][0, 1:]
    starts = batch["cu_seq_lens_q"].tolist()
    means = []
    for a, b in itertools.pairwise(starts):
        span = slice(a, b - 1)  # ce[j] predicts label j + 1: the document's labels a+1 .. b-1
        keep = labels[span] != -100
        if keep.any():
            means.append(ce[span][keep].mean())
    assert len(means) == 6
    assert float(loss) == pytest.approx(float(torch.stack(means).mean()), rel=1e-5)
    token_mean = torch.nn.functional.cross_entropy(logits[0, :-1], labels, ignore_index=-100)
    assert abs(float(loss) - float(token_mean)) > 1e-3  # the control: not the token mean
    per_token = PackedCollator()(longmagpie.pack(samples, seq_len=256, loss_weights="per_token").to_pylist())
    assert float(weighted_loss(logits, per_token["labels"], per_token["loss_weights"])) == pytest.approx(
        float(token_mean), rel=1e-5
    )
    with pytest.raises(ValueError, match="example 1 has no loss_weights but example 0 has"):
        rows = table.to_pylist()
        PackedCollator()([rows[0], {k: v for k, v in rows[1].items() if k != "loss_weights"}])
