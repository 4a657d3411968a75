from __future__ import annotations

import base64
import html
import io
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gicls.audit.study_model import BundleSummary, natural_key
from gicls.audit.study_report import (
    build_study_report,
    report_summary,
    study_summary,
    write_index,
)
from gicls.audit.timeline import peak_bins
from tests.audit.study_data import (
    BALANCED_ACCURACY,
    BUNDLE_ID,
    CLASSES,
    HELD_OUT_IMAGES,
    REFERENCE,
    Frame,
    bundle_summary,
    demo_study,
    manifest,
    without_study_columns,
    write_report,
    write_study,
    write_video,
)
from tests.conftest import REPO_ROOT

STUDY = "patient-07"
FRAMES = [
    Frame("f1.jpg", (0.9, 0.05, 0.05)),
    Frame("f10.jpg", (0.6, 0.3, 0.1)),
    Frame("f2.jpg", (0.8, 0.1, 0.1)),
    Frame("f3.jpg", (0.1, 0.85, 0.05)),
    Frame("f4.jpg", (0.4, 0.35, 0.25), status="review", reason="low_confidence"),
    Frame("f5.jpg", (0.0, 0.0, 0.0), status="quarantined", reason="truncated"),
]


def _images(page: str, kind: str) -> list[Image.Image]:
    found = re.findall(rf'src="data:image/{kind};base64,([A-Za-z0-9+/=]+)"', page)
    return [Image.open(io.BytesIO(base64.b64decode(data))) for data in found]


def _text(page: str) -> str:
    """The page's visible text, one space between words."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


def test_report_of_a_log_without_study_columns(tmp_path: Path) -> None:
    rows = without_study_columns(write_study(tmp_path, STUDY, FRAMES).table)

    written = write_report(tmp_path, STUDY, rows, bundle_summary(), CLASSES)

    assert written == [tmp_path / STUDY / "report.html"]
    text = _text(written[0].read_text(encoding="utf-8"))
    assert f"Study {STUDY}" in text
    assert f"Model bundle {BUNDLE_ID}" in text
    assert f"Balanced accuracy {BALANCED_ACCURACY:.3f} 0.700 to 0.900" in text
    assert (
        f"measured on {HELD_OUT_IMAGES} images of a held-out split of "
        "demo/training (split seed 42), never used for training" in text
    )
    # Scored frames: 3 Bleeding (one of them... none in review), 1 Normal, the review frame
    # (argmax Bleeding); the quarantined one has no score.
    assert "Bleeding 4 80.0 % 1" in text
    assert "Normal 1 20.0 % 0" in text
    assert "Polyp 0 0.0 % 0" in text
    assert f"f4.jpg Bleeding 0.400 low_confidence {STUDY}/_review/f4.jpg" in text
    assert f"f5.jpg truncated {STUDY}/_quarantine/truncated/f5.jpg" in text
    assert list(tmp_path.joinpath(STUDY).glob("*.staging")) == []


def test_the_disclaimer_is_the_readme_s(tmp_path: Path) -> None:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    quoted = re.search(r"^> \*\*Research use only\.\*\*(.*?)\n\n", readme, re.S | re.M)
    assert quoted is not None
    wording = "Research use only. " + " ".join(quoted[1].replace("\n>", " ").split())
    audit = write_study(tmp_path, STUDY, FRAMES[:1])
    page = write_report(tmp_path, STUDY, audit.table, bundle_summary(), CLASSES)[0]
    assert wording in _text(page.read_text(encoding="utf-8"))


def test_hostile_file_names_are_escaped(tmp_path: Path) -> None:
    # A file name cannot hold "/", so no closing tag: an opening one is enough to run.
    hostile = '<script>alert("x")<img src=x onerror=alert(1)>.jpg'
    frames = [Frame(hostile, (0.9, 0.05, 0.05), status="review", reason="low_confidence")]
    audit = write_study(tmp_path, STUDY, frames)
    page = write_report(tmp_path, STUDY, audit.table, bundle_summary(), CLASSES)[0]
    source = page.read_text(encoding="utf-8")
    assert "<script" not in source
    assert "<img src=x" not in source
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;img src=x onerror=alert(1)&gt;.jpg" in source


def test_key_frames_are_the_top_scores_of_each_class_in_natural_order(tmp_path: Path) -> None:
    audit = write_study(tmp_path, STUDY, FRAMES)
    report = build_study_report(
        tmp_path, STUDY, audit.table, bundle_summary(), CLASSES, key_frames_per_class=2
    )
    groups = {group.name: group.frames for group in report.key_frames}
    # The review and quarantined frames are never key frames; Polyp predicted none.
    assert set(groups) == {"Bleeding", "Normal"}
    assert [(f.label, f.score) for f in groups["Bleeding"]] == [
        (f"{STUDY}/f1.jpg", 0.9),  # the source path, which schema version 4 logs
        (f"{STUDY}/f2.jpg", 0.8),
    ]
    # Scored frames in natural order f1, f2, f3, f4, f10: f2 is the 2nd, f3 the 3rd.
    assert groups["Bleeding"][1].when == "frame 2 of 5"
    assert groups["Normal"][0].when == "frame 3 of 5"
    thumbnail = Image.open(io.BytesIO(base64.b64decode(groups["Bleeding"][0].jpeg_base64)))
    assert thumbnail.format == "JPEG" and max(thumbnail.size) <= 128


def test_frames_are_ordered_and_named_by_their_path_in_the_study(tmp_path: Path) -> None:
    frames = [Frame("a.jpg", (0.9, 0.05, 0.05)), Frame("b.jpg", (0.8, 0.1, 0.1))]
    # Exported in two parts: part 2's frame comes after part 1's whatever the file names say.
    rows = write_study(tmp_path, STUDY, frames).table.assign(
        study=STUDY, source_path=[f"{STUDY}/part10/a.jpg", f"{STUDY}/part2/b.jpg"]
    )
    report = build_study_report(tmp_path, STUDY, rows, bundle_summary(), CLASSES)
    (bleeding,) = report.key_frames
    assert [(f.label, f.when) for f in bleeding.frames] == [
        (f"{STUDY}/part10/a.jpg", "frame 2 of 2"),
        (f"{STUDY}/part2/b.jpg", "frame 1 of 2"),
    ]


def test_a_key_frame_whose_file_is_gone_shows_no_broken_image(tmp_path: Path) -> None:
    audit = write_study(tmp_path, STUDY, FRAMES[:2])
    (tmp_path / STUDY / "Bleeding" / "f1.jpg").unlink()
    page = write_report(tmp_path, STUDY, audit.table, bundle_summary(), CLASSES)[0]
    source = page.read_text(encoding="utf-8")
    assert "(file not found)" in source
    assert len(_images(source, "jpeg")) == 1  # f10.jpg only


def test_the_time_line_is_an_embedded_plot_per_series(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    audit = write_study(tmp_path, STUDY, FRAMES)
    scores = np.full((300, len(CLASSES)), 0.05)
    scores[:, 1] = 0.9
    scores[120:130, 0] = 0.97  # a bleed 12 s into the video
    write_video(tmp_path, STUDY, "capsule", scores, fps=10.0, key_frames=[125])

    page = write_report(tmp_path, STUDY, audit.table, bundle_summary(), CLASSES)[0]
    source = page.read_text(encoding="utf-8")
    text = _text(source)
    assert "Image files in name order (5 frames)" in text
    assert "Video capsule (300 frames scored)" in text
    plots = _images(source, "png")
    assert len(plots) == 2 and all(plot.width >= 400 for plot in plots)
    # The video's key frame, scored from its frame table, with its time in the video.
    assert "0.970 · 0:00:12 in capsule (frame 125)" in text
    assert "capsule_f0000125_t000012.50s.jpg" in text
    # 290 video frames (10 are the bleed) and 1 image file are predicted Normal.
    assert "Normal 291 " in text


def test_peak_bins_keep_a_one_frame_peak() -> None:
    scores = np.zeros((10_000, 2))
    scores[4321, 1] = 1.0
    x, binned = peak_bins(np.arange(10_000.0), scores, 100)
    assert len(x) == 100 and binned[:, 1].max() == 1.0 and binned[:, 0].max() == 0.0


def test_natural_key_orders_frame_numbers_as_numbers() -> None:
    names = ["frame10.jpg", "Frame2.jpg", "frame1.jpg", "a/frame3.jpg"]
    assert sorted(names, key=natural_key) == [
        "a/frame3.jpg",
        "frame1.jpg",
        "Frame2.jpg",
        "frame10.jpg",
    ]


def test_the_index_lists_every_study_with_counts_and_a_link(tmp_path: Path) -> None:
    first = write_study(tmp_path, "a&b", FRAMES[:2]).table.assign(study="a&b")
    second = write_study(tmp_path, "<b>x", FRAMES[2:]).table.iloc[2:].assign(study="<b>x")

    summaries = [
        study_summary(tmp_path, "<b>x", second, CLASSES),
        study_summary(tmp_path, "a&b", first, CLASSES),
    ]
    index = write_index(tmp_path, summaries)

    source = index.read_text(encoding="utf-8")
    assert 'href="%3Cb%3Ex/report.html"' in source
    assert 'href="a%26b/report.html"' in source
    assert "<b>x" not in source
    text = _text(source)
    assert "a&b 2 2 Bleeding 2 0 0" in text
    assert "<b>x 4 3 Bleeding 2, Normal 1 1 1" in text


def test_templates_are_package_data() -> None:
    from importlib.resources import files

    templates = files("gicls.audit").joinpath("templates")
    assert {"base.html.j2", "study_report.html.j2", "index.html.j2"} <= {
        entry.name for entry in templates.iterdir()
    }


_NOT_SOURCE = (".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "demo", ".*_cache")


@pytest.mark.slow
def test_an_installed_wheel_renders_with_its_own_templates(tmp_path: Path) -> None:
    # Built from a clean copy: a build/ folder left in the worktree would hide what is missing.
    source = tmp_path / "source"
    shutil.copytree(REPO_ROOT, source, ignore=shutil.ignore_patterns(*_NOT_SOURCE))
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), source],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if built.returncode != 0:
        pytest.skip(f"cannot build a wheel here: {built.stderr.strip().splitlines()[-1:]}")
    (wheel,) = tmp_path.glob("gicls-*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    # Only the wheel's own gicls is importable: its templates must have travelled with it.
    probe = (
        "import sys; sys.path.insert(0, sys.argv[1]); "
        "import gicls.audit.study_report as r; from pathlib import Path; "
        "assert r.__file__.startswith(sys.argv[1]), r.__file__; "
        "print(r.write_index(Path(sys.argv[2]), []).read_text())"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, str(site), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "No study yet." in result.stdout


def test_a_bundle_without_an_evaluation_says_so(tmp_path: Path) -> None:
    unevaluated = manifest().model_copy(update={"metrics": {}})
    summary = BundleSummary.from_manifest(unevaluated)
    assert summary.metrics == ()
    audit = write_study(tmp_path, STUDY, FRAMES[:1])
    page = write_report(tmp_path, STUDY, audit.table, summary, CLASSES)[0]
    text = _text(page.read_text(encoding="utf-8"))
    assert "This bundle records no held-out evaluation." in text
    assert "Figures measured on" not in text


def test_a_damaged_frame_table_is_named_and_the_rest_still_reported(tmp_path: Path) -> None:
    audit = write_study(tmp_path, STUDY, FRAMES)
    damaged = tmp_path / STUDY / "_frames" / "capsule.parquet"
    damaged.parent.mkdir()
    damaged.write_bytes(b"PAR1 not really")
    page = write_report(tmp_path, STUDY, audit.table, bundle_summary(), CLASSES)[0]
    text = _text(page.read_text(encoding="utf-8"))
    assert "Left out: frame tables that could not be read. capsule.parquet:" in text
    assert "Bleeding 4 80.0 % 1" in text


def test_a_study_of_quarantined_files_only_still_renders(tmp_path: Path) -> None:
    frames = [Frame(f"bad{n}.jpg", (0.0, 0.0, 0.0), "quarantined", "truncated") for n in (1, 2)]
    audit = write_study(tmp_path, STUDY, frames)
    page = write_report(tmp_path, STUDY, audit.table, bundle_summary(), CLASSES)[0]
    text = _text(page.read_text(encoding="utf-8"))
    assert "0 scored frames from 2 files (2 quarantined)" in text
    assert "No scored frames to plot." in text and "No key frames." in text
    assert "Quarantine list (2)" in text


@pytest.mark.parametrize("reference", [None, REFERENCE])
def test_a_built_report_gives_the_index_line_its_study_s_rows_give(tmp_path, reference) -> None:
    rows = demo_study(tmp_path, STUDY).table  # images, review, quarantine and a video

    built = build_study_report(tmp_path, STUDY, rows, bundle_summary(reference), CLASSES)

    line = study_summary(tmp_path, STUDY, rows, CLASSES, reference)
    assert report_summary(built) == line
    assert line.frames > line.files  # the video's frames are counted, not only its row
