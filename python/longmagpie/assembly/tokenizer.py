"""The one home of tokenizer loading: a transformers fast tokenizer from a directory, and its compiled handle.

Rust encodes with a ``_core.Tokenizer`` parsed from the tokenizer's JSON. Serialising a 150k-token vocabulary
takes about a second and parsing it a few tenths, so the handle is built once per tokenizer object and state
(:func:`core_tokenizer`) and shared by :func:`longmagpie.tokenize`, :func:`longmagpie.encode_conversations` and
:class:`longmagpie.Assembler`.
"""

from __future__ import annotations

import weakref
from pathlib import Path
from typing import Any

from longmagpie import _core
from longmagpie.templates.spans import check_prefix_space


def load_tokenizer(tokenizer: Any) -> Any:
    """Return a transformers fast tokenizer: ``tokenizer`` itself if it is one, else loaded from a directory.

    A string that is no existing path and looks like a Hub id (``name`` or ``org/name``) is passed to
    ``AutoTokenizer.from_pretrained`` as it is (it loads when the Hub or its cache is reachable).

    Raises:
        FileNotFoundError: a path that does not exist, or a Hub id that cannot be loaded.
        ValueError: an existing directory that holds no loadable tokenizer.
        TypeError: neither a path nor a fast tokenizer.

    """
    if not isinstance(tokenizer, (str, Path)):
        if not hasattr(tokenizer, "backend_tokenizer"):
            raise TypeError("tokenizer must be a path or a transformers fast tokenizer (PreTrainedTokenizerFast)")
        return tokenizer
    from transformers import AutoTokenizer

    path, text = Path(tokenizer), str(tokenizer)
    hub_id = isinstance(tokenizer, str) and not text.startswith((".", "/", "~")) and text.count("/") <= 1
    if not path.exists() and not hub_id:
        raise FileNotFoundError(f"tokenizer {path} does not exist; pass a directory with tokenizer.json")
    try:
        return AutoTokenizer.from_pretrained(text)
    except Exception as err:
        if path.exists():
            raise ValueError(f"cannot load a tokenizer from {path}: {err}") from err
        raise FileNotFoundError(
            f"cannot load a tokenizer from {text!r} ({type(err).__name__}: {err}); it is no local directory: pass "
            "a directory with tokenizer.json"
        ) from err


# tokenizer -> (state key, its compiled handle). Weak keys: an entry goes with its tokenizer, and an id reused by a
# later object cannot hit it.
_HANDLES: weakref.WeakKeyDictionary[Any, tuple[tuple[Any, ...], _core.Tokenizer]] = weakref.WeakKeyDictionary()


def _serialise(tok: Any) -> str:
    """Serialise the whole tokenizer to JSON (the expensive call the cache saves)."""
    return tok.backend_tokenizer.to_str()


def _state_key(tok: Any) -> tuple[Any, ...]:
    """Cheap facts that change when a tokenizer is modified in place: vocabulary sizes, added tokens, components.

    Adding tokens changes the sizes and the added-token list; replacing the normalizer, pre-tokenizer, post-processor
    or decoder changes their (small) serialised state; a new backend object changes its id.
    """
    backend = tok.backend_tokenizer
    parts: list[Any] = [id(backend), len(tok), backend.get_vocab_size(with_added_tokens=True)]
    parts.append(tuple(sorted((i, str(t)) for i, t in tok.added_tokens_decoder.items())))
    for name in ("normalizer", "pre_tokenizer", "post_processor", "decoder"):
        component = getattr(backend, name, None)
        parts.append(None if component is None else component.__getstate__())
    return tuple(parts)


def _build(tok: Any, where: str) -> _core.Tokenizer:
    text = _serialise(tok)
    check_prefix_space(text, where)
    return _core.Tokenizer(text)


def core_tokenizer(tok: Any) -> _core.Tokenizer:
    """Return the compiled handle of a transformers fast tokenizer, built once per tokenizer object and state.

    Raises:
        TemplateError: the tokenizer adds a prefix space to every text (token-level joins cannot use it).

    """
    where = getattr(tok, "name_or_path", "") or "the tokenizer"
    key = _state_key(tok)
    try:
        hit = _HANDLES.get(tok)
    except TypeError:  # not weak-referenceable or not hashable: no cache
        return _build(tok, where)
    if hit is not None and hit[0] == key:
        return hit[1]
    handle = _build(tok, where)
    _HANDLES[tok] = (key, handle)
    return handle
