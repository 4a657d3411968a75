"""The Parquet frame table: contract columns and types, published only when complete."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from gicls.daemon.frame_table import FrameTableWriter, ScoredFrames, read_frame_table

CLASSES = ("Bleeding", "Foreign Body", "Normal")


def append_rows(writer: FrameTableWriter, first: int, count: int) -> None:
    index = np.arange(first, first + count)
    scores = np.linspace(0, 1, count * 3, dtype=np.float32).reshape(count, 3)
    writer.append(
        ScoredFrames(index, index * 0.5, scores, ["Normal"] * count, ["Bleeding;Normal"] * count)
    )


def test_the_table_has_the_contract_columns_and_appears_only_when_published(tmp_path):
    path = tmp_path / "_frames" / "capsule.parquet"
    writer = FrameTableWriter(path, CLASSES)
    append_rows(writer, 0, 4)
    append_rows(writer, 4, 3)
    assert not path.exists()  # half a video is never under the final name
    assert writer.publish() == path
    assert [p.name for p in path.parent.iterdir()] == ["capsule.parquet"]
    table = read_frame_table(path)
    assert table.schema.names == [
        *["frame_index", "frame_time_s", "Bleeding", "Foreign Body", "Normal"],
        *["predicted_class", "flags"],
    ]
    assert table.schema.field("frame_index").type == pa.int64()
    assert table.schema.field("frame_time_s").type == pa.float64()
    assert table.schema.field("Foreign Body").type == pa.float32()
    assert table.schema.field("predicted_class").type == pa.string()
    assert table.column("frame_index").to_pylist() == [0, 1, 2, 3, 4, 5, 6]
    assert table.column("frame_time_s").to_pylist() == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0]
    assert table.column("Bleeding").to_pylist()[:2] == pytest.approx([0.0, 3 / 11])
    assert set(table.column("flags").to_pylist()) == {"Bleeding;Normal"}


def test_an_error_inside_the_block_leaves_neither_table_nor_staging_file(tmp_path):
    path = tmp_path / "capsule.parquet"
    with pytest.raises(RuntimeError), FrameTableWriter(path, CLASSES) as writer:
        append_rows(writer, 0, 5)
        raise RuntimeError("decoder died")
    assert list(tmp_path.iterdir()) == []


def test_scores_of_the_wrong_shape_are_refused(tmp_path):
    with FrameTableWriter(tmp_path / "x.parquet", CLASSES) as writer, pytest.raises(ValueError):
        writer.append(
            ScoredFrames(
                np.arange(2), np.zeros(2), np.zeros((2, 2), np.float32), ["A"] * 2, [""] * 2
            )
        )
