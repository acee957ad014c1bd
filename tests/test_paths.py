"""One directory expander and one hidden-file rule for every stage that reads a directory of inputs."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from support import make_samples

from longmagpie.distributed.windows import parquet_files
from longmagpie.generate.sources import resolve_inputs
from longmagpie.io import files, storage


def layout(root: Path) -> list[Path]:
    """Visible shards plus what a Spark job, a staged write and a killed write leave behind; returns the visible."""
    visible = [root / "part-0.parquet", root / "sub" / "part-1.parquet"]
    hidden = [
        root / "_temporary" / "0" / "part-9.parquet",  # Spark's staging directory
        root / ".staging" / "part-8.parquet",  # a staged export
        root / ".part-2.parquet.k1ll3d.tmp.parquet",  # a killed atomic write
        root / "sub" / "_part-3.parquet",
    ]
    for i, path in enumerate(visible + hidden):
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(make_samples([3 + i, 2]), path)
    (root / "_SUCCESS").write_text("")
    (root / "README.md").write_text("a card, not an input")
    return visible


def test_every_reader_sees_the_same_files(tmp_path: Path) -> None:
    visible = layout(tmp_path / "in")
    assert [f.local for f in storage.list_files(tmp_path / "in", (".parquet",))] == visible
    assert parquet_files(tmp_path / "in") == [str(p) for p in visible]  # Ray windows
    assert [Path(f.path) for f in resolve_inputs([tmp_path / "in"])] == visible  # harvest / hierarchical inputs
    table = files.read_table([tmp_path / "in"])  # pack, pmix, export
    assert (
        table.num_rows == 4
        and table.column("input_ids").to_pylist()
        == pa.concat_tables([pq.read_table(p) for p in visible]).column("input_ids").to_pylist()
    )


def test_the_rule_is_on_path_parts() -> None:
    assert storage.hidden("_temporary/0/part.parquet") and storage.hidden("a/.b/c.parquet")
    assert storage.hidden(".x.parquet") and storage.hidden("a/_b.parquet")
    assert not storage.hidden("a_b/c.parquet") and not storage.hidden("part-0.parquet")
