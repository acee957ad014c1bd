"""Padding-free batches for transformers and TRL from packed rows (extra ``longmagpie[torch]``).

:class:`PackedCollator` flattens a batch of packed rows (``input_ids``, ``seq_lengths`` and
optionally ``assistant_masks``/``labels``) into one sequence of shape ``(1, total_tokens)`` with
the keyword arguments transformers' padding-free attention takes:

- ``position_ids`` restart at 0 at every document, so RoPE sees each document as if alone, and
  eager/SDPA attention (with no ``attention_mask`` and no KV cache, as in ``Trainer``) masks
  attention between documents, since transformers derives the block-diagonal mask from them;
- ``cu_seq_lens_q``/``cu_seq_lens_k`` (int32, ``[0, cumsum(seq_lengths)...]``) and
  ``max_length_q``/``max_length_k`` (int), which FlashAttention's varlen kernels and
  linear-attention layers read directly;
- ``labels``: the row's ``labels`` (or ``input_ids``) with -100 where ``assistant_masks`` is 0 and
  on the first token of every document, so no token is predicted across a boundary;
- ``loss_weights`` (float32, ``(1, T)``, aligned with ``labels``) when the rows carry them
  (``pack(..., loss_weights="per_sequence")``): :func:`weighted_loss` turns them into the loss, and
  :class:`WeightedLossTrainer` is a transformers ``Trainer`` that uses it.

:func:`document_attention_mask` builds the explicit block-diagonal causal mask for code that
passes a 4-D mask itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

IGNORE_INDEX = -100


def _as_array(value: Any, name: str, index: int) -> np.ndarray:
    if value is None:
        raise ValueError(f"example {index}: '{name}' is missing or null")
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy().astype(np.int64, copy=False).reshape(-1)
    return np.asarray(value, dtype=np.int64).reshape(-1)


def _as_weights(value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy().astype(np.float32).reshape(-1)
    return np.asarray(value, dtype=np.float32).reshape(-1)


@dataclass
class PackedCollator:
    """Collate packed rows into one padding-free sequence for transformers' attention.

    Works as ``data_collator`` of a transformers ``Trainer`` (keep the dataset's ``seq_lengths``
    and ``assistant_masks`` columns: ``TrainingArguments(remove_unused_columns=False)``) or in any
    training loop; TRL's ``SFTTrainer`` needs no collator of its own (see the README).

    Attributes:
        return_seq_idx: also return ``seq_idx`` (document index of each token, int32), which
            linear-attention layers (Mamba-style short convolutions) read.
        return_attention_mask: also return an explicit 4-D block-diagonal causal mask (bool,
            ``(1, 1, T, T)``); only for eager/SDPA code paths that do not derive it from
            ``position_ids``. Memory grows with T², so leave it off at 64k.

    """

    return_seq_idx: bool = False
    return_attention_mask: bool = False

    def __call__(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Return ``input_ids``/``labels``/``position_ids`` (``(1, T)``), ``cu_seq_lens_q/k``, ``max_length_q/k``.

        Raises:
            ValueError: an example lacks ``input_ids``/``seq_lengths``, its ``seq_lengths`` do not
                sum to its token count or hold an entry < 1, or a per-token column has another
                length; the message names the example.

        """
        if not examples:
            raise ValueError("cannot collate an empty batch")
        ids_parts, label_parts, doc_lengths, weight_parts = [], [], [], []
        weighted = [ex.get("loss_weights") is not None for ex in examples]
        if any(weighted) and not all(weighted):
            raise ValueError(
                f"example {weighted.index(False)} has no loss_weights but example {weighted.index(True)} has"
            )
        for i, ex in enumerate(examples):
            ids = _as_array(ex.get("input_ids"), "input_ids", i)
            lengths = _as_array(ex.get("seq_lengths"), "seq_lengths", i)
            if lengths.size and lengths.min() < 1:
                raise ValueError(f"example {i}: seq_lengths has an entry < 1 ({lengths.tolist()})")
            if int(lengths.sum()) != ids.size:
                raise ValueError(f"example {i}: seq_lengths sums to {int(lengths.sum())} but input_ids has {ids.size}")
            labels = _as_array(ex["labels"], "labels", i).copy() if ex.get("labels") is not None else ids.copy()
            if labels.size != ids.size:
                raise ValueError(f"example {i}: labels has {labels.size} values but input_ids has {ids.size}")
            if ex.get("assistant_masks") is not None:
                mask = _as_array(ex["assistant_masks"], "assistant_masks", i)
                if mask.size != ids.size:
                    raise ValueError(
                        f"example {i}: assistant_masks has {mask.size} values but input_ids has {ids.size}"
                    )
                labels[mask == 0] = IGNORE_INDEX
            if weighted[0]:
                w = _as_weights(ex["loss_weights"])
                if w.size != ids.size:
                    raise ValueError(f"example {i}: loss_weights has {w.size} values but input_ids has {ids.size}")
                weight_parts.append(w)
            ids_parts.append(ids)
            label_parts.append(labels)
            doc_lengths.append(lengths)
        lengths = np.concatenate(doc_lengths)
        total = int(lengths.sum())
        if total == 0:
            raise ValueError("the batch holds no tokens")
        starts = np.zeros(lengths.size + 1, dtype=np.int64)
        np.cumsum(lengths, out=starts[1:])
        doc_of_token = np.repeat(np.arange(lengths.size), lengths)
        position_ids = np.arange(total, dtype=np.int64) - starts[:-1][doc_of_token]
        labels = np.concatenate(label_parts)
        labels[starts[:-1]] = IGNORE_INDEX
        cu = torch.from_numpy(starts.astype(np.int32))
        max_len = int(lengths.max())
        batch: dict[str, Any] = {
            "input_ids": torch.from_numpy(np.concatenate(ids_parts))[None],
            "labels": torch.from_numpy(labels)[None],
            "position_ids": torch.from_numpy(position_ids)[None],
            "cu_seq_lens_q": cu,
            "cu_seq_lens_k": cu.clone(),
            "max_length_q": max_len,
            "max_length_k": max_len,
        }
        if weighted[0]:
            weights = np.concatenate(weight_parts)
            weights[labels == IGNORE_INDEX] = 0.0  # no weight on a label that is not trained
            batch["loss_weights"] = torch.from_numpy(weights)[None]
        if self.return_seq_idx:
            batch["seq_idx"] = torch.from_numpy(doc_of_token.astype(np.int32))[None]
        if self.return_attention_mask:
            batch["attention_mask"] = document_attention_mask(lengths.tolist())
        return batch


def document_attention_mask(seq_lengths: Sequence[int], dtype: torch.dtype | None = None) -> torch.Tensor:
    """Return the block-diagonal causal mask of one packed row, shape ``(1, 1, T, T)``.

    Token ``q`` may attend to token ``k`` iff both lie in the same document and ``k <= q``.
    With ``dtype=None`` the mask is boolean (True = attend), as SDPA takes it; with a float
    ``dtype`` it is additive (0 where allowed, the dtype's minimum elsewhere), as eager attention adds it.
    """
    lengths = torch.as_tensor(list(seq_lengths), dtype=torch.long)
    doc = torch.repeat_interleave(torch.arange(lengths.numel()), lengths)
    pos = torch.arange(doc.numel())
    allowed = (doc[:, None] == doc[None, :]) & (pos[None, :] <= pos[:, None])
    if dtype is None:
        return allowed[None, None]
    mask = torch.zeros(allowed.shape, dtype=dtype)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask[None, None]


def weighted_loss(
    logits: torch.Tensor, labels: torch.Tensor, loss_weights: torch.Tensor, normalizer: float | None = None
) -> torch.Tensor:
    """Return ``sum(w * ce) / sum(w)`` over next-token predictions: the loss that ``loss_weights`` ask for.

    ``logits`` ``(B, T, V)``, ``labels`` and ``loss_weights`` ``(B, T)`` as :class:`PackedCollator` returns
    them (unshifted, as transformers takes ``labels``): token ``t`` is predicted from position ``t - 1`` with
    weight ``loss_weights[t]``; labels of -100 weigh nothing. With ``"per_sequence"`` weights (each document's sum
    to 1) this is the mean over the batch's documents of each document's mean token loss (LongAlign's sequence
    average); with ``"per_token"`` weights it is transformers' token mean. ``normalizer`` replaces ``sum(w)``
    (e.g. the documents of a whole accumulated batch).
    """
    shift_logits = logits[..., :-1, :].float()
    shift_labels = labels[..., 1:].reshape(-1)
    weights = loss_weights[..., 1:].reshape(-1).to(torch.float32)
    ce = torch.nn.functional.cross_entropy(
        shift_logits.reshape(-1, shift_logits.shape[-1]), shift_labels, ignore_index=IGNORE_INDEX, reduction="none"
    )
    weights = torch.where(shift_labels == IGNORE_INDEX, torch.zeros_like(weights), weights)
    total = weights.sum() if normalizer is None else torch.as_tensor(normalizer, dtype=torch.float32)
    return (ce * weights).sum() / total.clamp_min(torch.finfo(torch.float32).tiny)


_WEIGHTED_TRAINER: type | None = None


def _weighted_loss_trainer() -> type:
    """Build :class:`WeightedLossTrainer` on first use (transformers is imported only then)."""
    global _WEIGHTED_TRAINER
    if _WEIGHTED_TRAINER is not None:
        return _WEIGHTED_TRAINER
    from transformers import Trainer

    class WeightedLossTrainer(Trainer):  # type: ignore[misc]
        """A transformers ``Trainer`` whose loss is :func:`weighted_loss` over the batch's ``loss_weights``.

        Use it with ``data_collator=PackedCollator()`` on rows packed with ``loss_weights`` (and
        ``TrainingArguments(remove_unused_columns=False)``, so the ``seq_lengths`` and ``loss_weights`` columns
        reach the collator). Each micro-batch is normalised by its own weights (its documents, for
        ``"per_sequence"``), and the Trainer divides by the gradient-accumulation steps (``loss_is_scaled_for_ga``
        is ``False``), so an accumulated step averages its micro-batches.
        """

        loss_is_scaled_for_ga = False

        def compute_loss(
            self,
            model: Any,
            inputs: dict[str, Any],
            return_outputs: bool = False,
            num_items_in_batch: Any = None,
        ) -> Any:
            """Run the model without its own loss and return :func:`weighted_loss` (and the outputs if asked)."""
            if "loss_weights" not in inputs:
                raise ValueError(
                    "the batch has no loss_weights: pack with loss_weights='per_sequence' (or 'per_token'), keep the "
                    "column (remove_unused_columns=False) and collate with longmagpie's PackedCollator"
                )
            inputs = dict(inputs)
            weights = inputs.pop("loss_weights")
            labels = inputs.pop("labels")
            outputs = model(**inputs, use_cache=False)
            loss = weighted_loss(outputs.logits, labels, weights)
            return (loss, outputs) if return_outputs else loss

    _WEIGHTED_TRAINER = WeightedLossTrainer
    return WeightedLossTrainer


def __getattr__(name: str) -> Any:
    """``WeightedLossTrainer``: a transformers ``Trainer`` with :func:`weighted_loss`, built when asked for."""
    if name == "WeightedLossTrainer":
        return _weighted_loss_trainer()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
