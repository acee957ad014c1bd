"""A self-contained HTML report (PNG plots inlined) over what a longmagpie run wrote.

It looks through a directory (or files) for the tables each stage writes and plots what they say:
sample lengths before packing, row fill, documents per row, the long/short share of p-mixed rows, harvest
rejection reasons, and token totals. Only the columns needed are read (lengths come from list offsets, not
values), so multi-gigabyte outputs are summarised quickly. Needs matplotlib (extra ``longmagpie[report]``).
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from longmagpie.metadata import METADATA_KEY


@dataclass
class RunSummary:
    """What was found: per-kind tables and the numbers the report shows."""

    files: dict[str, list[Path]] = field(default_factory=dict)
    sample_lengths: list[np.ndarray] = field(default_factory=list)
    row_fill: list[np.ndarray] = field(default_factory=list)
    docs_per_row: list[np.ndarray] = field(default_factory=list)
    kinds: Counter[str] = field(default_factory=Counter)
    kind_tokens: Counter[str] = field(default_factory=Counter)
    harvest_counts: Counter[str] = field(default_factory=Counter)
    totals: dict[str, int] = field(default_factory=dict)

    def add_total(self, key: str, value: int) -> None:
        """Add ``value`` to the total ``key``."""
        self.totals[key] = self.totals.get(key, 0) + int(value)


def _list_lengths(col: pa.ChunkedArray) -> np.ndarray:
    return np.concatenate([pc.list_value_length(c).to_numpy(zero_copy_only=False) for c in col.chunks] or [[]])


def _kind(schema: pa.Schema) -> str | None:
    names = set(schema.names)
    if {"input_ids", "seq_lengths"} <= names:
        return "packed"
    if {"input_ids", "n_documents"} <= names:
        return "assembled"
    if "input_ids" in names:
        return "samples"
    if {"query", "answer", "context"} <= names:
        return "harvested"
    return None


def _seq_len_of(schema: pa.Schema) -> int | None:
    raw = (schema.metadata or {}).get(METADATA_KEY)
    if raw is None:
        return None
    params = json.loads(raw).get("params", {})
    value = params.get("pad_to") or params.get("seq_len")
    return int(value) if value else None


def summarize(paths: list[Path]) -> RunSummary:
    """Read what the report needs from Parquet files (directories are searched recursively)."""
    s = RunSummary()
    files: list[Path] = []
    for p in paths:
        if not p.exists():
            raise FileNotFoundError(f"{p} does not exist")
        files += sorted(p.rglob("*.parquet")) if p.is_dir() else [p]
        if p.is_dir():
            for marker in sorted(p.rglob("*.done.json")):
                counts = json.loads(marker.read_text()).get("counts", {})
                s.harvest_counts.update({k: int(v) for k, v in counts.items() if isinstance(v, int)})
    for f in files:
        try:
            schema = pq.read_schema(f)
        except (pa.ArrowInvalid, OSError) as err:
            raise ValueError(f"cannot read {f} as Parquet: {err}") from err
        kind = _kind(schema)
        if kind is None:
            continue
        s.files.setdefault(kind, []).append(f)
        if kind in ("samples", "assembled"):
            lengths = _list_lengths(pq.read_table(f, columns=["input_ids"]).column("input_ids"))
            s.sample_lengths.append(lengths)
            label = "input" if kind == "samples" else kind
            s.add_total(f"{label} samples", len(lengths))
            s.add_total(f"{label} tokens", int(lengths.sum()))
        elif kind == "packed":
            cols = ["seq_lengths", "length"] + (["kind"] if "kind" in schema.names else [])
            t = pq.read_table(f, columns=cols)
            seq_len = _seq_len_of(schema)
            lengths = t.column("length").to_numpy()
            s.row_fill.append(lengths / (seq_len or max(int(lengths.max(initial=1)), 1)))
            s.docs_per_row.append(_list_lengths(t.column("seq_lengths")))
            s.sample_lengths.append(pc.list_flatten(t.column("seq_lengths")).to_numpy())
            s.add_total("packed rows", t.num_rows)
            s.add_total("packed tokens", int(lengths.sum()))
            if "kind" in cols:
                flat_kind = pc.list_flatten(t.column("kind")).to_pylist()
                flat_len = pc.list_flatten(t.column("seq_lengths")).to_pylist()
                s.kinds.update(flat_kind)
                for k, n in zip(flat_kind, flat_len, strict=True):
                    s.kind_tokens[k] += n
        elif kind == "harvested":
            s.add_total("harvested rows", pq.read_metadata(f).num_rows)
    return s


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _plots(s: RunSummary) -> list[tuple[str, str]]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise ImportError("the report draws with matplotlib: pip install 'longmagpie[report]'") from err
    out: list[tuple[str, str]] = []

    def hist(title: str, data: list[np.ndarray], xlabel: str, log: bool = False, bins: int = 50) -> None:
        values = np.concatenate(data) if data else np.array([])
        if values.size == 0:
            return
        fig, ax = plt.subplots(figsize=(7, 3.2))
        if log and values.min() > 0:
            bins_ = np.logspace(np.log10(values.min()), np.log10(values.max() + 1), bins)
            ax.set_xscale("log")
        else:
            bins_ = bins
        ax.hist(values, bins=bins_, color="#3b6ea8")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("count")
        ax.set_title(title)
        out.append((title, _png(fig)))

    hist("Sample lengths before packing", s.sample_lengths, "tokens per sample / document", log=True)
    hist("Row fill", [100 * f for f in s.row_fill], "% of the row used")
    hist("Documents per row", s.docs_per_row, "documents", bins=30)

    def bars(title: str, counts: dict[str, int], xlabel: str) -> None:
        if not counts:
            return
        items = sorted(counts.items(), key=lambda kv: -kv[1])
        fig, ax = plt.subplots(figsize=(7, 0.4 * len(items) + 1.2))
        ax.barh([k for k, _ in items][::-1], [v for _, v in items][::-1], color="#a8563b")
        ax.set_xlabel(xlabel)
        ax.set_title(title)
        out.append((title, _png(fig)))

    if s.kinds:
        bars("Long/short share of p-mixed tokens", dict(s.kind_tokens), "tokens")
    rejections = {k: v for k, v in s.harvest_counts.items() if (k.startswith(("query_", "answer_", "doc_"))) and v}
    bars("Harvest rejections and edits", rejections, "count")
    return out


def render_html(s: RunSummary, title: str = "longmagpie run report") -> str:
    """Render the report as one HTML page with inline PNGs."""
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td style='text-align:right'>{v:,}</td></tr>"
        for k, v in sorted(s.totals.items())
    )
    if s.harvest_counts:
        rows += "".join(
            f"<tr><td>harvest: {html.escape(k)}</td><td style='text-align:right'>{v:,}</td></tr>"
            for k, v in sorted(s.harvest_counts.items())
        )
    files = "".join(
        f"<li><b>{html.escape(kind)}</b>: {len(fs)} file(s), e.g. {html.escape(str(fs[0]))}</li>"
        for kind, fs in sorted(s.files.items())
    )
    figures = "".join(
        f"<figure><img alt='{html.escape(t)}' src='data:image/png;base64,{png}'/><figcaption>{html.escape(t)}"
        "</figcaption></figure>"
        for t, png in _plots(s)
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:900px;margin:2em auto;color:#222}}
table{{border-collapse:collapse}}td{{padding:2px 12px;border-bottom:1px solid #ddd}}
figure{{margin:1.5em 0}}img{{max-width:100%}}</style></head>
<body><h1>{html.escape(title)}</h1>
<h2>Inputs</h2><ul>{files or "<li>no longmagpie tables found</li>"}</ul>
<h2>Totals</h2><table>{rows}</table>
<h2>Plots</h2>{figures or "<p>nothing to plot</p>"}
</body></html>
"""


def write_report(paths: list[Path], output: Path) -> RunSummary:
    """Summarise ``paths`` and write the HTML report to ``output`` (atomically)."""
    from longmagpie.files import write_bytes_atomic

    s = summarize(paths)
    output.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(output, render_html(s).encode())
    return s
