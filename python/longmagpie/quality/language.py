"""Offline language detection of harvest rows (queries, answers) with lingua, and a filter on it.

The detector is `lingua-language-detector <https://github.com/pemistahl/lingua-py>`_ (the ``quality`` extra):
Rust compiled into the wheel, its n-gram models embedded in the extension module itself (the wheel is about
100 MB for that reason). Nothing is downloaded or read at run time besides that module: checked here by
detecting with every model preloaded inside a network namespace with no interface (``unshare -n``) and an
empty ``HOME``, under ``strace`` (no socket call, no file opened besides the extension).

Choices, measured on this repository's development machine (2 CPU cores, shared with another test run: load
average 2 to 4 during the timings, which varied by up to 2x between repeated runs; expect less when idle):

* **High accuracy mode** (lingua's default). Low accuracy mode is 4-5x faster and lighter, but on short texts it
  is measurably worse: on 2,000 templated English questions of about 68 characters, high accuracy got
  2,000/2,000 right and low accuracy 1,952/2,000; on 40 two-to-four-word questions in five languages, 35/40
  against 31/40 (both got all 60 one-sentence texts right). Queries are short, so the accuracy is worth it.
* **All 75 languages** as candidates by default. Lingua's rule engine first narrows the candidates by script,
  and only the models it needs are loaded (lazily, shared by all detectors), so the cost is bounded:

  | measured here                                    | time         | peak RSS   |
  |--------------------------------------------------|--------------|------------|
  | build the detector (lazy, the default)           | < 0.01 s     | 13 MB      |
  | build it with every model preloaded              | 11 s         | 1.3 GB     |
  | 10k English questions (~68 chars), all languages | 22-34 s cold | 1.0-1.1 GB |
  | the same again, models loaded                    | 14-22 s      | 1.0-1.1 GB |
  | 10k questions: 6k English, 4k fr/de/es/zh        | 54 s cold    | 1.0 GB     |
  | 10k English questions, 20 ``languages``          | 13 s         | 440 MB     |
  | 10k English questions, 5 ``languages``           | 4.4 s        | 240 MB     |
  | 10k English questions, low accuracy mode         | 5.4 s        | 76 MB      |

  Pass ``languages=`` (two or more codes the corpus can contain) to cut both: a text in a language left out
  is then given the nearest candidate, usually with a low confidence. Long texts cost more per text, less per
  character (all languages: 1,250 texts/s at 250 characters, 400/s at 2,000, 220/s at 4,000), so only the
  first :data:`DEFAULT_MAX_CHARS` characters of each text are read: far more than lingua needs to settle a
  language.
* **Confidence**: lingua's confidence of the top language, a probability over the candidate languages (they sum
  to 1). Below :data:`DEFAULT_MIN_CONFIDENCE` (0.1) the text gets ``None``. Measured over all 75 candidates:
  every correct detection among the test sentences, two-word questions included, scored at least 0.13, and
  lingua's top candidates for strings with no language in them (``"OK"``, ``"DNA"``, ``"42 km"``,
  ``"e = mc^2"``) scored at most 0.07, as did two of the five wrong guesses on two-word questions. Raise it to
  trade recall for precision; with fewer candidates confidences run higher.
* **Batches** of :data:`BATCH_SIZE` texts through ``compute_language_confidence_values_in_parallel`` (lingua's
  own thread pool over idle cores; the top value and language come out of one pass, as fast as
  ``detect_languages_in_parallel_of`` on the same texts within the noise of the shared machine, and agreeing
  with it on all 1,607 texts compared). Batching bounds the Python objects lingua returns (one per candidate per text).

Determinism: lingua sums log-probabilities in an unspecified order, so its confidences differ in their last
bits from one call to the next (its top language did not, on the texts above). Only codes leave this module;
a text whose two best languages tie within 1e-9 gets ``None`` rather than an arbitrary one of them, so a flip
needs a confidence within a few ulps of ``min_confidence``.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, cast

import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:
    from lingua import LanguageDetector

#: Texts whose top language scores below this get ``None`` (see the module docstring for the measurements).
DEFAULT_MIN_CONFIDENCE = 0.1
#: Only this many leading characters of each text are given to the detector.
DEFAULT_MAX_CHARS = 1000
#: Texts per call into lingua (bounds the per-candidate confidence objects it returns).
BATCH_SIZE = 4096
#: The key of the texts without a detected language in the report's counts (the column holds null for them).
UNKNOWN = "unknown"
#: Default columns of :func:`language_filter`.
DEFAULT_COLUMNS: tuple[str, ...] = ("query", "answer")

_TIE = 1e-9


def _lingua() -> Any:
    try:
        import lingua
    except ImportError as e:  # pragma: no cover - exercised only without the extra
        raise ImportError("language detection needs lingua-language-detector: pip install 'longmagpie[quality]'") from e
    return lingua


@functools.lru_cache(maxsize=1)
def supported_languages() -> tuple[str, ...]:
    """ISO 639-1 codes that lingua detects (75 in lingua 2.1), sorted."""
    return tuple(sorted(lang.iso_code_639_1.name.lower() for lang in _lingua().Language.all()))


def _codes(codes: Iterable[str], what: str) -> tuple[str, ...]:
    """Check language codes; return them lower-cased, de-duplicated and sorted."""
    if isinstance(codes, str):
        raise ValueError(f"{what} must be a list of language codes, not the string {codes!r}")
    allowed = supported_languages()
    out = set()
    for code in codes:
        norm = code.strip().lower() if isinstance(code, str) else code
        if norm not in allowed:
            raise ValueError(f"{what}: unknown language code {code!r}; allowed ISO 639-1 codes: {', '.join(allowed)}")
        out.add(norm)
    if not out:
        raise ValueError(f"{what} is empty: give at least one language code")
    return tuple(sorted(out))


def _candidates(languages: Sequence[str] | None) -> tuple[str, ...] | None:
    """Check candidate codes: ``None`` (all) or two or more."""
    if languages is None:
        return None
    codes = _codes(languages, "languages")
    if len(codes) < 2:
        raise ValueError(
            f"languages={list(codes)}: give at least two candidates. With one, lingua's single-language mode "
            "calls most texts of the same script that language (10 of 12 German test sentences came out English); "
            "to keep one language, filter with keep=[...] and leave languages=None"
        )
    return codes


@functools.lru_cache(maxsize=8)
def _detector(codes: tuple[str, ...] | None) -> LanguageDetector:
    """One detector per set of candidates, built once (models load lazily and are shared between detectors)."""
    lingua = _lingua()
    if codes is None:
        builder = lingua.LanguageDetectorBuilder.from_all_languages()
    else:
        builder = lingua.LanguageDetectorBuilder.from_iso_codes_639_1(*(lingua.IsoCode639_1.from_str(c) for c in codes))
    return cast("LanguageDetector", builder.build())


def _check_confidence(min_confidence: float) -> None:
    if isinstance(min_confidence, bool) or not 0.0 <= min_confidence <= 1.0:
        raise ValueError(f"min_confidence must lie in [0, 1], got {min_confidence!r}")


def _detect_batch(detector: LanguageDetector, texts: list[str | None], min_confidence: float) -> list[str | None]:
    """Codes of one batch of (already truncated) texts."""
    out: list[str | None] = [None] * len(texts)
    todo: list[int] = []
    todo_texts: list[str] = []
    for i, t in enumerate(texts):
        if t is not None and t.strip():
            todo.append(i)
            todo_texts.append(t)
    if not todo:
        return out
    results = detector.compute_language_confidence_values_in_parallel(todo_texts)
    for i, values in zip(todo, results, strict=True):
        if not values:
            continue
        top = values[0].value
        if top <= 0.0 or top < min_confidence or (len(values) > 1 and values[1].value >= top - _TIE):
            continue
        out[i] = values[0].language.iso_code_639_1.name.lower()
    return out


def detect_languages(
    texts: Sequence[str | None],
    *,
    languages: Sequence[str] | None = None,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    max_chars: int | None = DEFAULT_MAX_CHARS,
) -> list[str | None]:
    """Detect the language of every text, offline.

    Args:
        texts: The texts; ``None`` and blank ones get ``None`` without reaching the detector.
        languages: Candidate ISO 639-1 codes (``["en", "fr"]``); ``None`` for all that lingua supports
            (:func:`supported_languages`). Fewer candidates are faster and lighter (figures in the module
            docstring); at least two (lingua's single-language mode, with one, is too lenient to be useful).
        min_confidence: The least confidence (lingua's probability of the top language among the candidates,
            in [0, 1]) for a code to be returned; below it, ``None``. Texts lingua cannot place at all (digits,
            punctuation) get ``None`` even at 0.
        max_chars: Only this many leading characters of each text are read; ``None`` reads all of it.

    Returns:
        One lower-case ISO 639-1 code (``"en"``, ``"zh"``, ...) or ``None`` per text, in order.

    Raises:
        ValueError: An unknown code in ``languages`` (the message lists the allowed ones), a single candidate,
            or ``min_confidence`` or ``max_chars`` out of range.

    """
    codes = _candidates(languages)
    _check_confidence(min_confidence)
    if max_chars is not None and (isinstance(max_chars, bool) or max_chars < 1):
        raise ValueError(f"max_chars must be a positive number of characters or None, got {max_chars!r}")
    detector = _detector(codes)
    out: list[str | None] = []
    for start in range(0, len(texts), BATCH_SIZE):
        batch = [t if t is None or max_chars is None else t[:max_chars] for t in texts[start : start + BATCH_SIZE]]
        out.extend(_detect_batch(detector, batch, min_confidence))
    return out


def _detect_column(
    column: pa.ChunkedArray, codes: tuple[str, ...] | None, min_confidence: float, max_chars: int | None
) -> list[str | None]:
    """Codes of a string column, read batch by batch (long answers are cut in Arrow before becoming Python)."""
    detector = _detector(codes)
    out: list[str | None] = []
    for start in range(0, len(column), BATCH_SIZE):
        part = column.slice(start, BATCH_SIZE)
        if max_chars is not None:
            part = pc.utf8_slice_codeunits(part, 0, max_chars)
        out.extend(_detect_batch(detector, part.to_pylist(), min_confidence))
    return out


def _counts(langs: Iterable[str | None]) -> dict[str, int]:
    """Rows per language, most frequent first, ties by code; ``None`` counted under :data:`UNKNOWN`."""
    counter = Counter(UNKNOWN if lang is None else lang for lang in langs)
    return dict(sorted(counter.items(), key=lambda kv: (-kv[1], kv[0])))


def split_by_language(
    table: pa.Table,
    *,
    columns: Sequence[str] = DEFAULT_COLUMNS,
    keep: Sequence[str] | None = None,
    languages: Sequence[str] | None = None,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    max_chars: int | None = DEFAULT_MAX_CHARS,
) -> tuple[pa.Table, pa.Table, dict[str, Any]]:
    """Record the language of some text columns and split the rows by whether their languages are kept.

    Every column ``c`` of ``columns`` gets a string column ``c_lang`` (ISO 639-1 code, null when undetected;
    an existing one is replaced), appended in the order of ``columns``. With ``keep``, a row stays only when
    every listed column's language is in ``keep`` (an undetected language never is); a removed row is counted
    once, under the first column (in ``columns`` order) whose language failed. Row order is kept.

    Args:
        table: Harvest rows (or any table with these string columns).
        columns: The text columns to detect.
        keep: The ISO 639-1 codes to keep; ``None`` records languages and removes nothing.
        languages: Candidate codes for the detector (see :func:`detect_languages`); ``None`` for all. Every
            code of ``keep`` must be among them.
        min_confidence: See :func:`detect_languages`.
        max_chars: See :func:`detect_languages`.

    Returns:
        ``(kept, removed, report)``: the kept rows; the removed rows (with their ``c_lang`` columns) and a
        ``reason`` column ``language:<column>`` (no rows without ``keep``); and a report: ``{"columns", "keep",
        "rows_before", "rows_after", "before": {column: {code: rows}}, "removed": {"language:<column>": rows},
        "after": {column: {code: rows}}}``; counts per
        language most frequent first, undetected under ``"unknown"``; ``removed`` has every column (zeros
        included) when ``keep`` is given and is empty otherwise.

    Raises:
        ValueError: Before any detection: a column missing or not a string column, no columns, an unknown code
            in ``keep`` or ``languages`` (the message lists the allowed codes), a single candidate, a ``keep``
            code that is not a candidate, or ``min_confidence`` / ``max_chars`` out of range.

    """
    if isinstance(columns, str):
        raise ValueError(f"columns must be a list of column names, not the string {columns!r}")
    columns = list(dict.fromkeys(columns))
    if not columns:
        raise ValueError("columns is empty: give at least one text column")
    for name in columns:
        if name not in table.column_names:
            raise ValueError(f"language_filter: column {name!r} is missing (the table has {table.column_names})")
        typ = table.schema.field(name).type
        if not (pa.types.is_string(typ) or pa.types.is_large_string(typ)):
            raise ValueError(f"language_filter: column {name!r} is {typ}, not a string column")
    keep_codes = None if keep is None else _codes(keep, "keep")
    codes = _candidates(languages)
    if keep_codes is not None and codes is not None and not set(keep_codes) <= set(codes):
        missing = sorted(set(keep_codes) - set(codes))
        raise ValueError(f"keep has {missing}, which are not among the candidate languages {list(codes)}")
    _check_confidence(min_confidence)
    if max_chars is not None and (isinstance(max_chars, bool) or max_chars < 1):
        raise ValueError(f"max_chars must be a positive number of characters or None, got {max_chars!r}")

    detected = {name: _detect_column(table.column(name), codes, min_confidence, max_chars) for name in columns}
    for name in columns:
        col = pa.array(detected[name], pa.string())
        lang_name = f"{name}_lang"
        if lang_name in table.column_names:
            table = table.set_column(table.column_names.index(lang_name), lang_name, col)
        else:
            table = table.append_column(lang_name, col)

    before = {name: _counts(detected[name]) for name in columns}
    removed: dict[str, int] = {}
    kept = table
    dropped = table.slice(0, 0).append_column("reason", pa.array([], pa.string()))
    if keep_codes is not None:
        allowed = set(keep_codes)
        removed = dict.fromkeys((f"language:{name}" for name in columns), 0)
        mask = []
        reasons = []
        for i in range(table.num_rows):
            failed = next((name for name in columns if detected[name][i] not in allowed), None)
            if failed is not None:
                removed[f"language:{failed}"] += 1
                reasons.append(f"language:{failed}")
            mask.append(failed is None)
        kept = table.filter(pa.array(mask, pa.bool_()))
        dropped = table.filter(pa.array([not m for m in mask], pa.bool_()))
        dropped = dropped.append_column("reason", pa.array(reasons, pa.string()))
        after = {name: _counts(lang for lang, m in zip(detected[name], mask, strict=True) if m) for name in columns}
    else:
        after = {name: dict(counts) for name, counts in before.items()}
    report: dict[str, Any] = {
        "columns": columns,
        "keep": None if keep_codes is None else list(keep_codes),
        "rows_before": table.num_rows,
        "rows_after": kept.num_rows,
        "before": before,
        "removed": removed,
        "after": after,
    }
    return kept, dropped, report


def language_filter(table: pa.Table, **options: Any) -> tuple[pa.Table, dict[str, Any]]:
    """Record the language of some text columns and optionally keep only rows in given languages.

    :func:`split_by_language` without the removed rows: the same keyword options (``columns``, ``keep``,
    ``languages``, ``min_confidence``, ``max_chars``), checks and report; returns ``(kept, report)``.
    """
    kept, _, report = split_by_language(table, **options)
    return kept, report
