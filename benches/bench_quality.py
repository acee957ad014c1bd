#!/usr/bin/env python3
r"""Near-duplicate benchmark: ``longmagpie.quality.NearDuplicates`` against planted edits, datasketch and rensa.

Part 1 (recall and precision). Distinct real English texts from the demo data (``python/longmagpie/demo/data``),
then planted copies of them with known edits, fed to the filter at the defaults of a column
(``default_shingle`` / ``default_threshold``):

    query     sentences of documents.jsonl and of the qa.jsonl answers (6-40 words) and the qa.jsonl queries
    context   paragraphs of documents.jsonl (>= 40 words)

A base text is dropped if its exact word-shingle Jaccard with an earlier one is >= 0.3 (answers that quote a
document), so the base is distinct. Edits (one planted copy per base text and kind):

    swap            two adjacent words swapped
    punct_removed   every punctuation mark deleted (so "Smeaton's" becomes "Smeatons": one word changes)
    punct_changed   commas -> semicolons, ' -> ’, the final mark changed, a comma after the first word
    case            the whole text upper- or lower-cased
    append          a sentence appended (questions: a short instruction such as "Answer briefly."; contexts: a
                    sentence of another document)
    subst           one word replaced by another word of the corpus
    combined        swap + subst + punct_removed

Each kind runs on its own (base texts first, then the copies, shuffled), so recall is clean:
recall = copies flagged as a duplicate of their own original / copies; precision = flagged rows that are a copy
of the row they point to / flagged rows (a copy that points to a kept sibling copy of the same original, which
can happen in "all", where every kind runs at once, or with several copies per text, counts as correct for
precision, not for recall). "exact>=t" is the share of copies whose exact shingle Jaccard
with their original reaches the threshold: the recall of a filter that compared every pair (the LSH gap is
the difference). The template set: questions from 4 templates x 12 x 10 content words, all distinct; a pair
differing in one content word looks like a one-word substitution, so the filter removes most of them (a
documented limitation, printed, not a failure). A grid of (shingle, threshold) shows why the defaults were chosen.

Part 2 (throughput and peak memory). The same synthetic near-duplicate corpus of ``--n`` questions (an opener
such as "What is" + 6-20 words drawn from the demo vocabulary + "?"; 20 % planted copies of an earlier row with
one of the edits above) in four child processes, each fed in batches of ``--batch`` rows, first row kept:

    longmagpie_1t  NearDuplicates(shingle=2, threshold=0.6, num_threads=1).add(pyarrow batch)
    longmagpie_2t  the same, num_threads=2
    datasketch     word 2-shingles in Python (same words: lower-cased runs of alphanumerics), MinHash.generator
                   (num_perm = bands x rows of longmagpie, 125), MinHashLSH(params=(bands, rows)): query, then
                   insert when no candidate. No check: any band collision removes the row.
    rensa          the same Python shingles, RMinHashDeduplicator(threshold, num_perm=125, use_lsh=True,
                   num_bands=25).add_pairs: LSH candidates checked against the *estimated* (sketch) Jaccard.

Only longmagpie verifies candidates by exact Jaccard; the removed counts differ, and each is scored against
the planted truth. Rows/s = rows / wall time of the loop (for the peers, the Python shingling is inside it and
also shown apart). Peak RSS = the child's VmHWM (its own peak since exec; ``ru_maxrss`` would also count the
parent's pages it had before exec); "RSS before" = VmRSS with the corpus in memory, just before the loop.

Part 3 (10 M questions, extrapolated). longmagpie (2 threads) on ``--scale-n`` synthetic questions generated
batch by batch (only the filter calls timed), ``memory_bytes`` and peak RSS, then the linear extrapolation
to 10 M rows, labelled as such.

Ratios are printed, never asserted. Other work on the box inflates timings: the load average is printed.

    P=/tmp/vq/bin/python
    $P benches/bench_quality.py --quick                 # ~20 s: 20 k rows in part 2, 100 k in part 3
    $P benches/bench_quality.py                         # 200 k rows in part 2, 1 M in part 3
    $P benches/bench_quality.py --parts 1 --json /tmp/quality.json

"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import string
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from benchkit import environment, run_child, status_mib

DATA = Path(__file__).resolve().parent.parent / "python" / "longmagpie" / "demo" / "data"
WORD = re.compile(r"[^\W_]+")
APOSTROPHE = re.compile(r"(?<=[^\W_])['\u2019\u02bc]")  # skipped inside a word, as the filter does
KINDS = ("swap", "punct_removed", "punct_changed", "case", "append", "subst", "combined")
SYNTH_KINDS = ("swap", "punct_removed", "punct_changed", "case", "append", "subst")
DISTINCT_MAX_J = 0.3
QUESTION_APPENDS = (
    "Answer briefly.",
    "Explain your reasoning.",
    "Please answer in one sentence.",
    "Cite the passage.",
    "Be specific.",
    "Give a short answer.",
)
OPENERS = (
    "What is",
    "What was",
    "How does",
    "How did",
    "Why did",
    "Why is",
    "Which of the following",
    "When was",
    "Who",
    "Explain how",
    "Describe the",
    "According to the passage, what",
)
TEMPLATES = (
    "What is the role of the {x} in the {y}?",
    "How did the {x} change the {y}?",
    "Why was the {x} important for the {y} in the nineteenth century?",
    "According to the passage, what problem did the {x} solve for the {y}?",
)
TEMPLATE_X = ("lens", "keeper", "tower", "lamp", "engine", "bridge", "river", "harbour", "map", "clock", "printer")
TEMPLATE_X = (*TEMPLATE_X, "furnace")
TEMPLATE_Y = ("ship", "city", "coast", "army", "market", "village", "railway", "factory", "island", "church")
ORDER_TEMPLATES = (
    "Did the {a} arrive before the {b}?",
    "Why was the {a} more important than the {b} to the town?",
    "How did the {a} depend on the {b} during the war?",
)
ORDER_NOUNS = ("keeper", "engineer", "ship", "bridge", "railway", "lamp", "harbour", "army")
QUERY_GRID = ((1, 0.7), (1, 0.8), (1, 0.9), (2, 0.5), (2, 0.6), (2, 0.7), (2, 0.8))
QUERY_GRID += ((3, 0.5), (3, 0.6), (3, 0.7), (5, 0.8))
CONTEXT_GRID = ((3, 0.8), (5, 0.7), (5, 0.8), (5, 0.9), (7, 0.8))
CHILD_MODES = ("longmagpie_1t", "longmagpie_2t", "datasketch", "rensa")
TEN_M = 10_000_000


# ----------------------------------------------------------------------------- words, shingles, real texts


def words(text: str) -> list[str]:
    """Lower-cased runs of alphanumeric characters, apostrophes inside a word skipped (the filter's words)."""
    return WORD.findall(APOSTROPHE.sub("", text.lower()))


def py_shingles(text: str, k: int) -> set[str]:
    """The word ``k``-shingles of a text (one shingle of all its words when it has fewer than ``k``)."""
    w = words(text)
    if not w:
        return set()
    n = min(k, len(w))
    return {" ".join(w[i : i + n]) for i in range(len(w) - n + 1)}


def jaccard(a: set[str], b: set[str]) -> float:
    """Exact Jaccard of two sets."""
    return len(a & b) / len(a | b) if a or b else 1.0


def sentences(text: str) -> list[str]:
    """Sentences of a text (split after . ! ? and at line breaks)."""
    out = []
    for para in text.split("\n"):
        out.extend(s.strip() for s in re.split(r"(?<=[.!?])\s+", para) if s.strip())
    return out


def distinct(texts: list[str], k: int, max_j: float = DISTINCT_MAX_J) -> tuple[list[str], int]:
    """Keep the texts whose shingle Jaccard with every earlier kept one is below ``max_j``; return (kept, dropped)."""
    kept: list[str] = []
    sets: list[set[str]] = []
    for t in texts:
        s = py_shingles(t, k)
        if s and all(jaccard(s, o) < max_j for o in sets):
            kept.append(t)
            sets.append(s)
    return kept, len(texts) - len(kept)


def load_jsonl(name: str) -> list[dict[str, Any]]:
    """Rows of one demo data file."""
    with open(DATA / name) as f:
        return [json.loads(line) for line in f if line.strip()]


def real_texts(column: str) -> tuple[list[str], int, list[str]]:
    """(distinct base texts, how many were dropped as near each other, sentences for appending) of a column."""
    docs = load_jsonl("documents.jsonl")
    qa = load_jsonl("qa.jsonl")
    doc_sents = [s for d in docs for s in sentences(d["text"])]
    if column == "query":
        pool = [q["query"] for q in qa]
        pool += [s for s in doc_sents + [s for q in qa for s in sentences(q["answer"])] if 6 <= len(words(s)) <= 40]
        base, dropped = distinct(pool, 2)
    elif column == "context":
        pool = [p.strip() for d in docs for p in d["text"].split("\n\n") if len(words(p)) >= 40]
        base, dropped = distinct(pool, 5)
    else:  # "context (documents)": the whole documents
        base, dropped = distinct([d["text"] for d in docs], 5)
    return base, dropped, [s for s in doc_sents if len(words(s)) >= 8]


def vocabulary() -> list[str]:
    """Distinct lower-cased words (3+ letters) of the demo documents: the synthetic corpus draws from them."""
    text = " ".join(d["text"] for d in load_jsonl("documents.jsonl"))
    return sorted({w for w in words(text) if len(w) >= 3 and w.isalpha()})


# ----------------------------------------------------------------------------- edits

_PUNCT_DELETE = str.maketrans("", "", string.punctuation + "’‘“”")


def edit(text: str, kind: str, rng: random.Random, vocab: list[str], appends: list[str] | tuple[str, ...]) -> str:
    """A copy of ``text`` with one known edit (see the module docstring)."""
    if kind == "swap":
        toks = text.split(" ")
        if len(toks) < 2:
            return text
        i = rng.randrange(len(toks) - 1)
        toks[i], toks[i + 1] = toks[i + 1], toks[i]
        return " ".join(toks)
    if kind == "punct_removed":
        return re.sub(r" +", " ", text.translate(_PUNCT_DELETE)).strip()
    if kind == "punct_changed":
        t = text.replace(",", ";").replace("'", "’").rstrip()
        t = t[:-1] + {".": "!", "?": "?!", "!": "."}[t[-1]] if t and t[-1] in ".?!" else t + "."
        first, _, rest = t.partition(" ")
        return f"{first}, {rest}" if rest else t
    if kind == "case":
        return text.upper() if rng.random() < 0.5 else text.lower()
    if kind == "append":
        extra = rng.choice(appends)
        while extra in text:
            extra = rng.choice(appends)
        return f"{text} {extra}"
    if kind == "subst":
        toks = text.split(" ")
        idx = [i for i, t in enumerate(toks) if WORD.search(t)]
        if not idx:
            return text
        i = rng.choice(idx)
        old = WORD.search(toks[i]).group(0).lower()  # type: ignore[union-attr]
        new = rng.choice(vocab)
        while new == old:
            new = rng.choice(vocab)
        toks[i] = WORD.sub(new, toks[i], count=1)
        return " ".join(toks)
    if kind == "combined":
        for k in ("swap", "subst", "punct_removed"):
            text = edit(text, k, rng, vocab, appends)
        return text
    raise ValueError(kind)


# ----------------------------------------------------------------------------- part 1: recall and precision


def run_filter(texts: list[str], shingle: int, threshold: float, seed: int = 0) -> np.ndarray:
    """``dup_of`` of every text (one filter, one batch)."""
    from longmagpie.quality.dedup import NearDuplicates

    nd = NearDuplicates(shingle=shingle, threshold=threshold, seed=seed, num_threads=2)
    return nd.add(pa.array(texts, pa.string())).dup_of.to_numpy(zero_copy_only=False)


def planted_run(
    base: list[str],
    kinds: tuple[str, ...],
    shingle: int,
    threshold: float,
    rng: random.Random,
    vocab: list[str],
    apps: list[str] | tuple[str, ...],
    reps: int = 1,
) -> dict[str, Any]:
    """Base texts then ``reps`` copies per base text and kind (copies shuffled); recall, precision, exact-J bound."""
    copies = [(edit(t, kind, rng, vocab, apps), i) for kind in kinds for i, t in enumerate(base) for _ in range(reps)]
    rng.shuffle(copies)
    texts = base + [c for c, _ in copies]
    family = np.array(list(range(len(base))) + [i for _, i in copies], dtype=np.int64)
    is_copy = np.arange(len(texts)) >= len(base)
    dup_of = run_filter(texts, shingle, threshold)
    flagged = dup_of >= 0
    correct = flagged & (family[np.where(flagged, dup_of, 0)] == family)  # its original or a sibling copy
    own = flagged & is_copy & (dup_of == family)  # its own original (the base rows are rows 0..len(base)-1)
    exact = [jaccard(py_shingles(c, shingle), py_shingles(base[i], shingle)) for c, i in copies]
    n_copies = int(is_copy.sum())
    return {
        "copies": n_copies,
        "recall": int(own.sum()) / n_copies,
        "flagged": int(flagged.sum()),
        "precision": int(correct.sum()) / int(flagged.sum()) if flagged.any() else 1.0,
        "base_flagged": int((flagged & ~is_copy).sum()),
        "exact_ge_t": float(np.mean([j >= threshold for j in exact])),
        "exact_j_median": float(np.median(exact)),
    }


def template_questions(seed: int) -> list[str]:
    """Every template filled with every (x, y): distinct questions, shuffled."""
    qs = [t.format(x=x, y=y) for t in TEMPLATES for x in TEMPLATE_X for y in TEMPLATE_Y]
    random.Random(seed).shuffle(qs)
    return qs


def order_questions(seed: int) -> tuple[list[str], dict[int, int]]:
    """Both orders of every noun pair in every order template, shuffled; and each row's mirrored partner."""
    pairs = [(t, a, b) for t in ORDER_TEMPLATES for i, a in enumerate(ORDER_NOUNS) for b in ORDER_NOUNS[i + 1 :]]
    rows = [(t.format(a=a, b=b), k) for k, (t, a, b) in enumerate(pairs)]
    rows += [(t.format(a=b, b=a), k) for k, (t, a, b) in enumerate(pairs)]
    random.Random(seed + 1).shuffle(rows)
    first: dict[int, int] = {}
    partner: dict[int, int] = {}
    for i, (_, k) in enumerate(rows):
        if k in first:
            partner[i] = first[k]
        else:
            first[k] = i
    return [q for q, _ in rows], partner


def evaluate(column: str, shingle: int, threshold: float, seed: int, templates: bool) -> dict[str, Any]:
    """Per-kind runs, the all-kinds run and (for questions) the template sets, at one (shingle, threshold)."""
    from longmagpie.quality.dedup import lsh_params

    base, dropped, doc_sents = real_texts(column)
    vocab = vocabulary()
    apps = QUESTION_APPENDS if column == "query" else doc_sents
    reps = 5 if column == "documents" else 1  # 24 documents: five copies of each per edit
    res: dict[str, Any] = {
        "column": column,
        "reps": reps,
        "shingle": shingle,
        "threshold": threshold,
        "lsh_bands_rows": lsh_params(threshold, 128),
        "base": len(base),
        "base_dropped": dropped,
        "kinds": {},
    }
    for j, kind in enumerate(KINDS):
        rng = random.Random(seed * 31 + j)
        res["kinds"][kind] = planted_run(base, (kind,), shingle, threshold, rng, vocab, apps, reps)
    res["all"] = planted_run(base, KINDS, shingle, threshold, random.Random(seed * 31 + 99), vocab, apps, reps)
    if templates:
        qs = template_questions(seed)
        removed = int((run_filter(qs, shingle, threshold) >= 0).sum())
        res["templates"] = {"rows": len(qs), "removed": removed, "share": removed / len(qs)}
        qs, partner = order_questions(seed)
        dup_of = run_filter(qs, shingle, threshold)
        merged = sum(int(dup_of[i] == j) for i, j in partner.items())
        res["order"] = {"pairs": len(partner), "merged": merged, "share": merged / len(partner)}
    return res


def print_planted(r: dict[str, Any]) -> list[str]:
    """The per-kind table of one evaluation."""
    b, rw = r["lsh_bands_rows"]
    what = {
        "query": "sentences and queries",
        "context": "paragraphs of >= 40 words",
        "documents": "whole documents, as contexts",
    }[r["column"]]
    col = "context" if r["column"] == "documents" else r["column"]
    lines = [
        "",
        f"== 1. planted near-duplicates: {col} defaults (shingle {r['shingle']}, threshold {r['threshold']}; "
        f"LSH {b} bands x {rw} rows of num_perm=128) on {what} ==",
        f"base: {r['base']} distinct real texts ({r['base_dropped']} dropped: Jaccard >= {DISTINCT_MAX_J} "
        f"with an earlier one); {r['reps']} planted cop{'y' if r['reps'] == 1 else 'ies'} per base text and edit",
        f"{'edit':15s} {'copies':>7s} {'recall':>7s} {'flagged':>8s} {'precision':>9s} {'base flagged':>12s} "
        f"{'exact>=t':>9s} {'median J':>9s}",
    ]
    for kind, k in [*r["kinds"].items(), ("all (mixed)", r["all"])]:
        lines.append(
            f"{kind:15s} {k['copies']:7d} {k['recall']:7.3f} {k['flagged']:8d} {k['precision']:9.3f} "
            f"{k['base_flagged']:12d} {k['exact_ge_t']:9.3f} {k['exact_j_median']:9.3f}"
        )
    if "templates" in r:
        t = r["templates"]
        lines.append(
            f"template set: {t['rows']} distinct template questions ({len(TEMPLATES)} templates x {len(TEMPLATE_X)} x "
            f"{len(TEMPLATE_Y)} content words): {t['removed']} removed ({t['share'] * 100:.1f} %): pairs differing "
            "in one content word look like a one-word substitution (documented limitation)"
        )
        o = r["order"]
        lines.append(
            f"order set: {o['pairs']} pairs of questions with two nouns exchanged ('Did the A arrive before the B?' "
            f"/ '... B ... A?'): {o['merged']} merged ({o['share'] * 100:.1f} %) (documented limitation)"
        )
    print("\n".join(lines), flush=True)
    return lines


def print_grid(column: str, rows: list[dict[str, Any]]) -> list[str]:
    """Recall per kind, precision and the template removals over the (shingle, threshold) grid."""
    short = {"punct_removed": "punct-", "punct_changed": "punct~", "combined": "comb"}
    head = " ".join(f"{short.get(k, k):>6s}" for k in KINDS)
    lines = [
        "",
        f"== 1. grid ({column}): recall per edit | all kinds mixed | distinct template questions removed, "
        "exchanged-noun pairs merged ==",
        f"{'sh':>2s} {'thr':>4s} {'b x r':>6s}  {head}  {'recall':>6s} {'prec':>6s} {'base fl':>7s}  {'tmpl rm':>7s} "
        f"{'order':>7s}",
    ]
    for r in rows:
        b, rw = r["lsh_bands_rows"]
        per = " ".join(f"{r['kinds'][k]['recall']:6.3f}" for k in KINDS)
        tm = f"{r['templates']['share'] * 100:6.1f}%" if "templates" in r else "      -"
        tm += f" {r['order']['share'] * 100:6.1f}%" if "order" in r else "       -"
        mark = " <- default" if r.get("default") else ""
        lines.append(
            f"{r['shingle']:2d} {r['threshold']:4.2f} {f'{b}x{rw}':>6s}  {per}  {r['all']['recall']:6.3f} "
            f"{r['all']['precision']:6.3f} {r['all']['base_flagged']:7d}  {tm:>7s}{mark}"
        )
    print("\n".join(lines), flush=True)
    return lines


def part1(args: argparse.Namespace) -> dict[str, Any]:
    """Recall/precision at the defaults of both columns, and the grids."""
    from longmagpie.quality.dedup import default_shingle, default_threshold

    out: dict[str, Any] = {"defaults": {}, "grid": {}}
    t0 = time.perf_counter()
    for column in ("query", "context", "documents"):
        as_col = "context" if column == "documents" else column
        sh, th = default_shingle(as_col), default_threshold(as_col)
        r = evaluate(column, sh, th, args.seed, templates=column == "query")
        r["table"] = print_planted(r)
        out["defaults"][column] = r
    for column, grid in (("query", QUERY_GRID), ("context", CONTEXT_GRID)):
        sh0, th0 = default_shingle(column), default_threshold(column)
        rows = []
        for sh, th in grid:
            if (sh, th) == (sh0, th0):
                r = dict(out["defaults"][column])
            else:
                r = evaluate(column, sh, th, args.seed, templates=column == "query")
            r["default"] = (sh, th) == (sh0, th0)
            rows.append(r)
        table = print_grid(column, rows)
        out["grid"][column] = {"rows": [{k: v for k, v in r.items() if k != "table"} for r in rows], "table": table}
    out["seconds"] = time.perf_counter() - t0
    return out


# ----------------------------------------------------------------------------- synthetic corpus (parts 2, 3)


def splitmix(x: np.ndarray) -> np.ndarray:
    """SplitMix64 of a uint64 array (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


class Synth:
    """Seeded synthetic questions, batch after batch: base questions (a pure function of their id, so a copy
    regenerates its original without keeping any text) and 20 % planted copies of an earlier base question."""

    COPY_SHARE = 0.2

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.vocab = vocabulary()
        self.vocab_pa = pa.array(self.vocab, pa.string())
        self.openers = pa.array(OPENERS, pa.string())
        self.next_base = 0
        self.batch_no = 0

    def base_texts(self, ids: np.ndarray) -> pa.Array:
        """The base question of each id."""
        key = ids.astype(np.uint64) * np.uint64(0x100000001B3) ^ np.uint64(self.seed * 7919 + 1)
        lens = (6 + splitmix(key) % np.uint64(15)).astype(np.int64)
        offsets = np.zeros(len(ids) + 1, dtype=np.int64)
        np.cumsum(lens, out=offsets[1:])
        pos = np.arange(offsets[-1], dtype=np.int64) - np.repeat(offsets[:-1], lens)
        word = splitmix(np.repeat(key, lens) + (pos.astype(np.uint64) + np.uint64(1)) * np.uint64(0x9E3779B1))
        body = pa.LargeListArray.from_arrays(
            pa.array(offsets), self.vocab_pa.take(pa.array(word % np.uint64(len(self.vocab))))
        )
        opener = self.openers.take(pa.array(splitmix(key ^ np.uint64(0xABCDEF)) % np.uint64(len(OPENERS))))
        return pc.binary_join_element_wise(opener, pc.binary_join(body, " "), " ").cast(pa.string())

    def batch(self, n: int) -> tuple[pa.Array, np.ndarray, np.ndarray]:
        """(texts, family = base id of each row, is_copy) of the next ``n`` rows."""
        rng = np.random.default_rng([self.seed, self.batch_no])
        prng = random.Random(self.seed * 1_000_003 + self.batch_no)
        self.batch_no += 1
        is_copy = rng.random(n) < self.COPY_SHARE
        before = self.next_base + np.cumsum(~is_copy) - (~is_copy)  # base rows generated before each row
        is_copy &= before > 0
        before = self.next_base + np.cumsum(~is_copy) - (~is_copy)
        family = np.where(is_copy, (rng.random(n) * np.maximum(before, 1)).astype(np.int64), before)
        self.next_base += int((~is_copy).sum())
        texts = pc.binary_join_element_wise(self.base_texts(family), "?", "").to_pylist()
        for i in np.flatnonzero(is_copy):
            texts[i] = edit(texts[i], SYNTH_KINDS[prng.randrange(len(SYNTH_KINDS))], prng, self.vocab, QUESTION_APPENDS)
        return pa.array(texts, pa.string()), family, is_copy


def score(dup_of: np.ndarray, removed: np.ndarray, family: np.ndarray, is_copy: np.ndarray) -> dict[str, Any]:
    """Removed rows against the planted truth (``dup_of`` may be None: no pointer to check)."""
    n_copy = int(is_copy.sum())
    out: dict[str, Any] = {
        "removed": int(removed.sum()),
        "planted": n_copy,
        "removed_planted": int((removed & is_copy).sum()),
        "removed_base": int((removed & ~is_copy).sum()),
        "recall": int((removed & is_copy).sum()) / max(n_copy, 1),
        "precision_copy": int((removed & is_copy).sum()) / max(int(removed.sum()), 1),
    }
    if dup_of is not None:
        ok = removed & (family[np.where(removed, dup_of, 0)] == family)
        out["precision_pointer"] = int(ok.sum()) / max(int(removed.sum()), 1)
    return out


def cpu_seconds() -> float:
    """User + system CPU time of this process."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def child_compare(mode: str, n: int, batch: int, seed: int) -> dict[str, Any]:
    """One part-2 mode on the synthetic corpus (in this process)."""
    from longmagpie.quality.dedup import lsh_params

    shingle, threshold = 2, 0.6
    bands, rows = lsh_params(threshold, 128)
    t0 = time.perf_counter()
    synth = Synth(seed)
    texts, family, is_copy = synth.batch(n)
    gen_s = time.perf_counter() - t0
    pylist = texts.to_pylist() if not mode.startswith("longmagpie") else None
    removed = np.zeros(n, dtype=bool)
    dup_of: np.ndarray | None = np.full(n, -1, dtype=np.int64)
    shingle_s = 0.0
    extra: dict[str, Any] = {}
    if mode.startswith("longmagpie"):
        from longmagpie.quality.dedup import NearDuplicates

        nd = NearDuplicates(shingle=shingle, threshold=threshold, num_threads=1 if mode.endswith("1t") else 2)
        nd.add(pa.array([""]))  # starts the thread pool; row 0 (no words: never a target), the corpus starts at 1
    elif mode == "datasketch":
        from datasketch import MinHash, MinHashLSH

        lsh = MinHashLSH(threshold=threshold, num_perm=bands * rows, params=(bands, rows))
    else:
        from rensa import RMinHashDeduplicator

        dd = RMinHashDeduplicator(threshold=threshold, num_perm=bands * rows, use_lsh=True, num_bands=bands)
    rss_before = status_mib("VmRSS")
    c0, t0 = cpu_seconds(), time.perf_counter()
    for start in range(0, n, batch):
        stop = min(start + batch, n)
        if mode.startswith("longmagpie"):
            d = nd.add(texts.slice(start, stop - start)).dup_of.to_numpy(zero_copy_only=False)
            dup_of[start:stop] = np.where(d >= 0, d - 1, -1)  # type: ignore[index]
            continue
        s0 = time.perf_counter()
        sh = [py_shingles(t, shingle) for t in pylist[start:stop]]  # type: ignore[index]
        if mode == "datasketch":
            sh = [[s.encode() for s in x] for x in sh]
        shingle_s += time.perf_counter() - s0
        if mode == "datasketch":
            for i, m in enumerate(MinHash.generator(sh, num_perm=bands * rows), start):
                cand = lsh.query(m)
                if cand:
                    dup_of[i] = min(cand)  # type: ignore[index]
                else:
                    lsh.insert(i, m)
        else:
            keep = dd.add_pairs([(str(i), list(x)) for i, x in enumerate(sh, start)])
            removed[start:stop] = ~np.asarray(keep, dtype=bool)
    seconds = time.perf_counter() - t0
    cpu = cpu_seconds() - c0
    peak = status_mib("VmHWM")
    if mode == "rensa":
        dup_of = None
        extra["verification"] = "estimated Jaccard of the sketches (no pointer: add_pairs returns keep flags)"
    else:
        removed = dup_of >= 0  # type: ignore[operator]
        extra["verification"] = "exact shingle Jaccard" if mode.startswith("longmagpie") else "none (band collision)"
    if mode.startswith("longmagpie"):
        extra["memory_bytes"] = nd.memory_bytes
    return {
        "mode": mode,
        "rows": n,
        "seconds": seconds,
        "rows_per_s": n / seconds,
        "cpu_seconds": cpu,
        "python_shingle_seconds": shingle_s,
        "gen_seconds": gen_s,
        "peak_rss_MiB": peak,
        "rss_before_MiB": rss_before,
        "num_perm": bands * rows,
        "bands_rows": [bands, rows],
        "loadavg_1m": os.getloadavg()[0],
        **score(dup_of, removed, family, is_copy),
        **extra,
    }


def child_scale(n: int, batch: int, seed: int, threads: int) -> dict[str, Any]:
    """Part 3: longmagpie on ``n`` rows generated batch by batch (only ``add`` timed)."""
    from longmagpie.quality.dedup import NearDuplicates, default_shingle, default_threshold

    nd = NearDuplicates(shingle=default_shingle("query"), threshold=default_threshold("query"), num_threads=threads)
    synth = Synth(seed)
    family_all = np.empty(n, dtype=np.int32)
    removed = np.zeros(n, dtype=bool)
    is_copy_all = np.zeros(n, dtype=bool)
    pointer_ok = 0
    rss_before = status_mib("VmRSS")
    add_s = gen_s = 0.0
    checkpoints = []
    chars = 0
    c0 = cpu_seconds()
    for start in range(0, n, batch):
        m = min(batch, n - start)
        t0 = time.perf_counter()
        texts, family, is_copy = synth.batch(m)
        gen_s += time.perf_counter() - t0
        chars += int(pc.sum(pc.utf8_length(texts)).as_py())
        family_all[start : start + m] = family
        is_copy_all[start : start + m] = is_copy
        c1, t0 = cpu_seconds(), time.perf_counter()
        d = nd.add(texts).dup_of.to_numpy(zero_copy_only=False)
        wall = time.perf_counter() - t0
        add_s += wall
        batch_cpu = cpu_seconds() - c1
        hit = d >= 0
        removed[start : start + m] = hit
        pointer_ok += int((family_all[d[hit]] == family[hit]).sum())
        checkpoints.append(
            {
                "rows": start + m,
                "batch_rows": m,
                "batch_seconds": wall,
                "batch_cpu_seconds": batch_cpu,
                "add_seconds": add_s,
                "memory_bytes": nd.memory_bytes,
                "rss_MiB": status_mib("VmRSS"),
            }
        )
    cpu = cpu_seconds() - c0
    res = {
        "mode": f"scale_{threads}t",
        "rows": n,
        "batch": batch,
        "threads": threads,
        "add_seconds": add_s,
        "rows_per_s": n / add_s,
        "gen_seconds": gen_s,
        "cpu_seconds_incl_gen": cpu,
        "mean_chars": chars / n,
        "memory_bytes": nd.memory_bytes,
        "peak_rss_MiB": status_mib("VmHWM"),
        "rss_before_MiB": rss_before,
        "checkpoints": checkpoints,
        "loadavg_1m": os.getloadavg()[0],
        **score(None, removed, family_all, is_copy_all),  # type: ignore[arg-type]
    }
    res["precision_pointer"] = pointer_ok / max(res["removed"], 1)
    return res


# ----------------------------------------------------------------------------- parts 2 and 3 (parent side)


def spawn(args: argparse.Namespace, mode: str, n: int) -> dict[str, Any]:
    """Run one child mode and return its RESULT (or an error)."""
    cmd = [sys.executable, os.path.abspath(__file__), "--child", mode, "--n", str(n), "--batch", str(args.batch)]
    cmd += ["--seed", str(args.seed)]
    res = run_child(cmd, args.timeout, tail_lines=6)
    res.setdefault("mode", mode)
    return res


def part2(args: argparse.Namespace) -> dict[str, Any]:
    """Throughput and peak memory of longmagpie (1 and 2 threads), datasketch and rensa on one corpus."""
    results: dict[str, dict[str, Any]] = {}
    for mode in args.modes.split(","):
        res = spawn(args, mode, args.n)
        results[mode] = res
        if "error" in res:
            print(f"[2] {mode}: ERROR {res['error'][-300:]}", flush=True)
        else:
            print(f"[2] {mode:14s} {res['seconds']:7.2f} s  peak RSS {res['peak_rss_MiB']:.0f} MiB", flush=True)
    lines = [
        "",
        f"== 2. throughput and peak memory: {args.n:,} synthetic questions (20 % planted copies), batches of "
        f"{args.batch:,}, shingle 2, threshold 0.6 ==",
        f"{'mode':14s} {'rows/s':>9s} {'s':>7s} {'cpu s':>7s} {'py shingle s':>12s} {'peak RSS':>9s} "
        f"{'RSS before':>10s} {'removed':>8s} {'recall':>7s} {'prec':>6s} {'base rm':>7s}  verification",
    ]
    for mode, r in results.items():
        if "error" in r:
            lines.append(f"{mode:14s} ERROR {r['error'][-200:]}")
            continue
        prec = r.get("precision_pointer", r["precision_copy"])
        lines.append(
            f"{mode:14s} {r['rows_per_s']:9,.0f} {r['seconds']:7.2f} {r['cpu_seconds']:7.2f} "
            f"{r['python_shingle_seconds']:12.2f} {r['peak_rss_MiB']:8.0f}M {r['rss_before_MiB']:9.0f}M "
            f"{r['removed']:8,d} {r['recall']:7.3f} {prec:6.3f} {r['removed_base']:7,d}  {r['verification']}"
        )
    lines.append(
        "   prec = removed rows that point to a copy of their own original (rensa: removed rows that are planted "
        "copies, it returns no pointer); base rm = distinct base rows removed"
    )
    lines.append("ratios (longmagpie / peer; rows/s: higher is faster; peak RSS and RSS growth: lower is smaller):")
    ratios = []
    for num in ("longmagpie_2t", "longmagpie_1t"):
        for den in ("datasketch", "rensa"):
            a, b = results.get(num), results.get(den)
            if not a or not b or "error" in a or "error" in b:
                continue
            growth_a = a["peak_rss_MiB"] - a["rss_before_MiB"]
            growth_b = b["peak_rss_MiB"] - b["rss_before_MiB"]
            r = {
                "num": num,
                "den": den,
                "rows_per_s": a["rows_per_s"] / b["rows_per_s"],
                "rows_per_s_excl_py_shingle": (b["seconds"] - b["python_shingle_seconds"]) / a["seconds"],
                "peak_rss": a["peak_rss_MiB"] / b["peak_rss_MiB"],
                "rss_growth": growth_a / growth_b if growth_b > 0 else None,
            }
            ratios.append(r)
            g = f"{r['rss_growth']:6.2f}" if r["rss_growth"] is not None else "     -"
            lines.append(
                f"   {num + '/' + den:26s} rows/s {r['rows_per_s']:7.2f}  (peer without its Python shingling "
                f"{r['rows_per_s_excl_py_shingle']:6.2f})  peak RSS {r['peak_rss']:5.2f}  RSS growth {g}"
            )
    loads = [r["loadavg_1m"] for r in results.values() if "loadavg_1m" in r]
    if loads:
        lines.append(
            f"   1-min load average at child exit: {min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} CPUs "
            "(other work on the box inflates timings)"
        )
    print("\n".join(lines), flush=True)
    return {"results": results, "ratios": ratios, "table": lines}


def part3(args: argparse.Namespace) -> dict[str, Any]:
    """longmagpie on a scaled run, extrapolated linearly to 10 M rows."""
    res = spawn(args, "scale", args.scale_n)
    if "error" in res:
        print(f"\n== 3. scale run: ERROR {res['error'][-400:]}", flush=True)
        return {"result": res}
    f = TEN_M / res["rows"]
    index_mib = res["memory_bytes"] / 2**20
    ext = {
        "rows": TEN_M,
        "from_rows": res["rows"],
        "add_seconds": res["add_seconds"] * f,
        "memory_GiB": index_mib * f / 1024,
        # the index grows with the rows; the rest of the peak (interpreter, one batch and its hashes) does not
        "peak_rss_GiB": (res["peak_rss_MiB"] + index_mib * (f - 1)) / 1024,
        "peak_rss_all_linear_GiB": (res["rss_before_MiB"] + (res["peak_rss_MiB"] - res["rss_before_MiB"]) * f) / 1024,
    }
    cps = res["checkpoints"]
    trend = ""
    if len(cps) >= 3:
        # per-row cost against the rows already indexed (candidates to verify grow with the index)
        x = np.array([c["rows"] - c["batch_rows"] for c in cps], dtype=float)
        y = np.array([c["batch_seconds"] / c["batch_rows"] for c in cps])
        ycpu = np.array([c["batch_cpu_seconds"] / c["batch_rows"] for c in cps])
        # fitted on CPU time (less disturbed by other work on the box), turned into wall time by the run's ratio
        slope, icpt = np.polyfit(x, ycpu, 1)
        b = res["batch"]
        xs = np.arange(0, TEN_M, b, dtype=float)
        wall_per_cpu = float(y.sum() / ycpu.sum())
        ext["add_seconds_fitted"] = float(np.sum(np.maximum(icpt + slope * xs, 0) * b)) * wall_per_cpu
        ext["cost_first_last_us"] = [float(y[0] * 1e6), float(y[-1] * 1e6)]
        ext["cpu_first_last_us"] = [float(ycpu[0] * 1e6), float(ycpu[-1] * 1e6)]
        trend = (
            f"   per-row cost rises with the index: first batch {y[0] * 1e6:.1f} us/row ({ycpu[0] * 1e6:.1f} us CPU), "
            f"last {y[-1] * 1e6:.1f} us/row ({ycpu[-1] * 1e6:.1f} us CPU); if it keeps rising as fitted "
            f"(CPU per row = a + b x rows indexed), 10 M would take {ext['add_seconds_fitted']:,.0f} s "
            f"({ext['add_seconds_fitted'] / 60:.1f} min) instead"
            + (" (a fit over fewer than 1 M rows says little)" if res["rows"] < 1_000_000 else "")
        )
    lines = [
        "",
        f"== 3. scale: longmagpie, {res['rows']:,} synthetic questions (20 % planted copies, mean "
        f"{res['mean_chars']:.0f} chars), {res['threads']} threads, batches of {res['batch']:,} ==",
        f"measured: add {res['add_seconds']:.2f} s ({res['rows_per_s']:,.0f} rows/s; generation "
        f"{res['gen_seconds']:.1f} s apart), memory_bytes {res['memory_bytes'] / 2**20:,.0f} MiB "
        f"({res['memory_bytes'] / (res['rows'] - res['removed']):.0f} B per kept row), peak RSS "
        f"{res['peak_rss_MiB']:,.0f} MiB (RSS before {res['rss_before_MiB']:.0f} MiB)",
        f"removed {res['removed']:,} of {res['planted']:,} planted copies + {res['removed_base']:,} base rows: recall "
        f"{res['recall']:.3f}, precision (pointer) {res['precision_pointer']:.3f}",
        "memory_bytes per row fed, after each batch: "
        + ", ".join(f"{c['rows'] // 1000:,}k {c['memory_bytes'] / c['rows']:.0f} B" for c in cps),
        f"10 M questions, extrapolated from a measured {res['rows']:,}-row run on this machine (linear): "
        f"filter time {ext['add_seconds']:,.0f} s ({ext['add_seconds'] / 60:.1f} min at {res['threads']} threads), "
        f"index memory_bytes {ext['memory_GiB']:.2f} GiB, peak RSS {ext['peak_rss_GiB']:.2f} GiB (measured peak + "
        f"the index grown linearly; {ext['peak_rss_all_linear_GiB']:.2f} GiB if the whole RSS growth, one batch "
        "included, were scaled)",
        *([trend] if trend else []),
        "   (the index's hash tables and vectors grow by doubling, so memory_bytes at 10 M can sit up to ~2x above "
        f"the linear figure just after a doubling; load average at exit {res['loadavg_1m']:.1f} on "
        f"{os.cpu_count()} CPUs)",
    ]
    print("\n".join(lines), flush=True)
    return {"result": res, "extrapolated_10M": ext, "table": lines}


def main() -> None:
    """Parse the command line and run the parts (or one child mode)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run: --n 20000, --scale-n 100000")
    ap.add_argument("--parts", default="1,2,3", help="comma-separated subset of 1,2,3")
    ap.add_argument("--n", type=int, default=None, help="part-2 corpus rows (default 200000; 20000 with --quick)")
    ap.add_argument("--scale-n", type=int, default=None, help="part-3 rows (default 1000000; 100000 with --quick)")
    ap.add_argument("--batch", type=int, default=None, help="rows per filter call (default 20000 in part 2)")
    ap.add_argument("--modes", default=",".join(CHILD_MODES), help=f"part-2 modes: {','.join(CHILD_MODES)}")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=int, default=900, help="seconds per child process")
    ap.add_argument("--json", default="", help="also write every figure here")
    ap.add_argument("--child", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        if args.child == "scale":
            res = child_scale(args.n, args.batch, args.seed, threads=2)
        else:
            res = child_compare(args.child, args.n, args.batch, args.seed)
        print("RESULT " + json.dumps(res), flush=True)
        return
    args.n = args.n or (20_000 if args.quick else 200_000)
    args.scale_n = args.scale_n or (100_000 if args.quick else 1_000_000)
    batch_given = args.batch
    env = environment(("numpy", "pyarrow", "longmagpie", "datasketch", "rensa"))
    env["time"] = time.strftime("%Y-%m-%d %H:%M:%S")
    env["loadavg_1m"] = os.getloadavg()[0]
    print(json.dumps(env), flush=True)
    parts = {p.strip() for p in args.parts.split(",")}
    out: dict[str, Any] = {"environment": env, "args": vars(args).copy()}
    t0 = time.perf_counter()
    if "1" in parts:
        out["part1"] = part1(args)
    if "2" in parts:
        args.batch = batch_given or 20_000
        out["part2"] = part2(args)
    if "3" in parts:
        args.batch = batch_given or min(100_000, max(1, args.scale_n // 10))
        out["part3"] = part3(args)
    out["wall_seconds"] = time.perf_counter() - t0
    print(f"\n(total {out['wall_seconds']:.0f} s)\nJSON " + json.dumps(out, default=str), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=str))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
