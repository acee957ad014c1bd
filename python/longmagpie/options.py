"""The one home of the packing options: their defaults, their allowed values and their checks.

:func:`longmagpie.pack`, :func:`longmagpie.pack_stream`, :func:`longmagpie.pack_pmix`,
:func:`longmagpie.pack_pmix_stream`, the Ray transforms (``longmagpie.distributed.ray``), the ``pack``/``pmix``
commands and the ``[pack]``/``[pmix]`` sections of ``pipeline.toml`` all take their defaults from here, so a
stage gives the same data whichever entry point runs it (a test checks that they agree). Building an options
object checks every value, so a command refuses a bad value before it reads any input.

The defaults, and why:

- ``seq_len = 65536``: the 64k rows LongMagpie trains on.
- ``strategy = "bfd"``: best-fit decreasing gives the tightest rows (ffd and sequential are there to compare with
  other packers, or to keep input order).
- ``overflow = "error"`` for pack and p-mix: a default that silently truncates is not one. A sample longer than
  the row stops the run with the row named; ``"truncate"``, ``"drop"`` or ``"split"`` are a choice to make, and
  what they did is counted in the statistics.
- p-mix ``p_long = 0.4``, ``n_short_prefix = 1``, ``fill = "upstream"``, ``exhausted = "stop"``: the upstream
  recipe (``build_sft_data_p_mix.py``: ``--choose_rate 0.4``, one short sample opening each row, a row closed
  when the drawn sample does not fit), except that each sample is used at most once unless ``"recycle"`` asks
  for upstream's reuse. ``fill = "best_fit"`` fills tighter and is one option away.
- ``pad_documents_to = None`` for both: documents are not padded unless context parallelism asks for it
  (``2 * cp``); padding costs row space, so it is a choice to make.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, get_args

Strategy = Literal["bfd", "ffd", "sequential"]
Overflow = Literal["error", "truncate", "drop", "split"]
Fill = Literal["upstream", "best_fit"]
PmixOverflow = Literal["error", "truncate", "drop"]
Exhausted = Literal["stop", "short_only", "recycle"]
LossWeights = Literal["per_sequence", "per_token"]

#: The columns the packers read from their inputs (``input_ids`` is required, the others are carried when present).
INPUT_COLUMNS = ("input_ids", "assistant_masks", "labels", "source")

#: Upstream ``--choose_rate`` (the probability that the next segment is long).
UPSTREAM_P_LONG = 0.4


def require_ints(**values: object) -> None:
    """Raise ``TypeError`` naming the first argument that is neither ``None`` nor an ``int``."""
    for name, value in values.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")


#: The largest row the core packs (its offsets are int32).
MAX_SEQ_LEN = 2**31 - 1


def _choice(label: str, value: object, allowed: Any) -> None:
    """Raise the core's message for a value not among ``allowed`` (a ``Literal``)."""
    choices = get_args(allowed)
    if value not in choices:
        raise ValueError(f"unknown {label} {value!r}; expected one of {', '.join(repr(c) for c in choices)}")


#: Which tokens :class:`PackOptions`' ``loss_weights`` weigh (the core applies it): a token is trained when its
#: mask is 1 and its label is not -100, and it is not the first token of its document (no token of the document
#: predicts it; :class:`~longmagpie.integrations.torch.PackedCollator` ignores its label). Other tokens and
#: padding weigh 0. With ``"per_sequence"`` the weights of each document with a trained token sum to 1, so
#: ``sum(w * loss) / sum(w)`` over a batch is the mean over its documents of each document's mean token loss.
LOSS_WEIGHTS_RULE = "mask 1, label != -100, not a document's first token"


def _weights(value: object) -> None:
    """Check a ``loss_weights`` choice (``None``: no column)."""
    if value is not None:
        _choice("loss_weights", value, LossWeights)


#: What :class:`PackOptions`' ``pad_documents_to`` does (the core applies it): each document is followed by
#: padding (``pad_id``, mask 0, label -100, loss weight 0) up to a multiple of the option, inside its own entry of
#: ``seq_lengths`` (which still tiles the row, so document-masked attention and position ids need no change); a
#: ``seq_lengths_unpadded`` column gives each entry's real tokens (0 for a row's ``pad_to`` segment). The planner
#: places the padded lengths, so no row exceeds ``seq_len``.
PAD_DOCUMENTS_RULE = "each document padded to a multiple inside its seq_lengths entry; seq_lengths_unpadded = real"


def _pad_documents(multiple: int | None, seq_len: int, pad_to: int | None) -> None:
    """Check ``pad_documents_to`` against the row sizes (with the core's messages)."""
    if multiple is None:
        return
    if multiple < 1:
        raise ValueError(f"pad_documents_to must be >= 1 (got {multiple})")
    for name, n in (("seq_len", seq_len), ("pad_to", pad_to)):
        if n is not None and n % multiple:
            raise ValueError(
                f"pad_documents_to={multiple} must divide {name}={n}, so that a padded document still fits and rows "
                f"stay a multiple of it; pass a {name} that is a multiple of {multiple}"
            )


def _common(seq_len: int, num_threads: int | None) -> None:
    """Make the checks every packer makes (with the core's messages)."""
    if seq_len < 1:
        raise ValueError(f"seq_len must be a positive number of tokens (got {seq_len})")
    if seq_len > MAX_SEQ_LEN:
        raise ValueError(f"seq_len must be in 1..={MAX_SEQ_LEN} (got {seq_len})")
    if num_threads is not None and num_threads < 1:
        raise ValueError("num_threads must be >= 1 (or None for all cores)")


@dataclass(frozen=True, kw_only=True)
class PackOptions:
    """Options of :func:`longmagpie.pack` (and ``pack_stream``, ``ray_pack``, ``longmagpie pack``, ``[pack]``).

    Attributes:
        seq_len: row capacity in tokens.
        strategy: ``"bfd"`` best-fit decreasing, ``"ffd"`` first-fit decreasing, ``"sequential"`` (input order).
        overflow: a sample longer than ``seq_len``: ``"error"``, ``"truncate"``, ``"drop"`` or ``"split"``.
        pad_to: pad every row to this many tokens (at least ``seq_len``) with ``pad_id``, recorded as a segment of
            its own (mask 0, label -100); ``None``: rows keep their real length.
        pad_id: token id of the padding.
        loss_weights: also write a per-token ``loss_weights`` column (list<float32>): ``"per_sequence"`` puts
            ``1/N`` on each of a document's ``N`` trained tokens (LongAlign's sequence average: every document
            weighs the same, however long its answer), ``"per_token"`` puts 1 on every trained token; ``None``
            writes none. See :data:`LOSS_WEIGHTS_RULE`.
        pad_documents_to: pad every document to a multiple of this many tokens (``2 * cp`` for context
            parallelism; it must divide ``seq_len`` and ``pad_to``), and write ``seq_lengths_unpadded``; ``None``:
            documents are not padded. See :data:`PAD_DOCUMENTS_RULE`.
        num_threads: threads that copy tokens (``None``: every core); the output is the same for any value.

    Raises:
        TypeError: a count that is not an int.
        ValueError: a value out of range or not among the choices (the message names the option).

    """

    seq_len: int = 65536
    strategy: Strategy = "bfd"
    overflow: Overflow = "error"
    pad_to: int | None = None
    pad_id: int = 0
    loss_weights: LossWeights | None = None
    pad_documents_to: int | None = None
    num_threads: int | None = None

    def __post_init__(self) -> None:
        """Check every value."""
        require_ints(
            seq_len=self.seq_len,
            pad_to=self.pad_to,
            pad_id=self.pad_id,
            pad_documents_to=self.pad_documents_to,
            num_threads=self.num_threads,
        )
        _common(self.seq_len, self.num_threads)
        _choice("strategy", self.strategy, Strategy)
        _choice("overflow policy", self.overflow, Overflow)
        if self.pad_to is not None and not self.seq_len <= self.pad_to <= MAX_SEQ_LEN:
            raise ValueError(
                f"pad_to must be at least seq_len={self.seq_len} and at most {MAX_SEQ_LEN} (got {self.pad_to})"
            )
        if not 0 <= self.pad_id < 2**31:
            raise ValueError(f"pad_id must be >= 0 and fit in int32 (got {self.pad_id})")
        _weights(self.loss_weights)
        _pad_documents(self.pad_documents_to, self.seq_len, self.pad_to)

    def params(self) -> dict[str, Any]:
        """Return the options that shape the output, as a dict (what its metadata records; not ``num_threads``)."""
        return _params(self)


@dataclass(frozen=True, kw_only=True)
class PmixOptions:
    """Options of :func:`longmagpie.pack_pmix` (and its stream, Ray, CLI and ``[pmix]`` forms).

    Attributes:
        seq_len: row capacity in tokens.
        p_long: probability that a segment after the prefix is long (upstream: 0.4).
        n_short_prefix: short samples opening each row (upstream: 1).
        seed: seed of the shuffles and draws, in [0, 2**64).
        fill: ``"upstream"`` closes a row when the drawn sample does not fit; ``"best_fit"`` first fills the gap.
        overflow: a sample that cannot fit next to its row's prefix: ``"error"``, ``"truncate"`` or ``"drop"``.
        exhausted: an empty pool at a draw: ``"stop"``, ``"short_only"`` or ``"recycle"`` (upstream's reuse).
        max_rows: stop after this many rows.
        loss_weights: also write a per-token ``loss_weights`` column, as in :class:`PackOptions`.
        pad_documents_to: pad every segment to a multiple of this many tokens (with id 0), as in
            :class:`PackOptions`; it must divide ``seq_len``.
        num_threads: threads that copy tokens; the output is the same for any value.

    Raises:
        TypeError: a count that is not an int, or a ``p_long`` that is not a number.
        ValueError: a value out of range or not among the choices (the message names the option).

    """

    seq_len: int = 65536
    p_long: float = UPSTREAM_P_LONG
    n_short_prefix: int = 1
    seed: int = 0
    fill: Fill = "upstream"
    overflow: PmixOverflow = "error"
    exhausted: Exhausted = "stop"
    max_rows: int | None = None
    loss_weights: LossWeights | None = None
    pad_documents_to: int | None = None
    num_threads: int | None = None

    def __post_init__(self) -> None:
        """Check every value (``p_long`` becomes a float)."""
        if isinstance(self.p_long, bool) or not isinstance(self.p_long, (int, float)):
            raise TypeError(f"p_long must be a number, got {type(self.p_long).__name__}")
        object.__setattr__(self, "p_long", float(self.p_long))
        require_ints(
            seq_len=self.seq_len,
            n_short_prefix=self.n_short_prefix,
            seed=self.seed,
            max_rows=self.max_rows,
            pad_documents_to=self.pad_documents_to,
            num_threads=self.num_threads,
        )
        _common(self.seq_len, self.num_threads)
        if not 0.0 <= self.p_long <= 1.0:
            raise ValueError(f"p_long must be in [0, 1] (got {self.p_long})")
        if not 0 <= self.seed < 2**64:
            raise ValueError(f"seed must be in [0, 2**64) (got {self.seed})")
        if self.n_short_prefix < 0:
            raise ValueError(f"n_short_prefix must be >= 0 (got {self.n_short_prefix})")
        if self.max_rows is not None and self.max_rows < 1:
            raise ValueError("max_rows must be >= 1 (or None)")
        _choice("fill", self.fill, Fill)
        if self.overflow == "split":
            raise ValueError(
                "overflow='split' is not available for p-mix (a split conversation loses its question or answer); "
                "use 'error', 'truncate' or 'drop'"
            )
        _choice("overflow policy", self.overflow, PmixOverflow)
        _choice("exhausted policy", self.exhausted, Exhausted)
        _weights(self.loss_weights)
        _pad_documents(self.pad_documents_to, self.seq_len, None)

    def params(self) -> dict[str, Any]:
        """Return the options that shape the output, as a dict (what its metadata records; not ``num_threads``)."""
        return _params(self)


def _params(options: PackOptions | PmixOptions) -> dict[str, Any]:
    """Return the fields of ``options`` but ``num_threads``, which never changes the output."""
    params = dataclasses.asdict(options)
    del params["num_threads"]
    return params


Options = TypeVar("Options", PackOptions, PmixOptions)


def resolve(cls: type[Options], options: Options | None, overrides: dict[str, Any], **base: Any) -> Options:
    """Return ``options`` (or ``cls(**base)``) with the keyword ``overrides`` applied, checked.

    The streaming and Ray entry points take an options object and/or its fields as keywords
    (``pack_stream(reader, seq_len=4096)``): one place turns either form into the checked object.

    Raises:
        TypeError: ``options`` of another type, or an override that is not a field (the message lists the fields).

    """
    if options is not None and not isinstance(options, cls):
        raise TypeError(f"options must be a {cls.__name__}, got {type(options).__name__}")
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in overrides if k not in names]
    if unknown:
        raise TypeError(f"unknown {cls.__name__} field {unknown[0]!r}; the fields are {', '.join(names)}")
    start = options if options is not None else cls(**base)
    return dataclasses.replace(start, **overrides) if overrides else start


def defaults(options: type[PackOptions] | type[PmixOptions]) -> dict[str, Any]:
    """Return the default of every field of ``options`` (what the CLI, TOML and API defaults must equal)."""
    return {f.name: f.default for f in dataclasses.fields(options)}
