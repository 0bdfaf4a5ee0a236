"""The corpus recipes' EmoBox tables (egs/*/ser1/local/emobox.tsv.gz) and the shared matching
of a release against a table (sertk.data.release)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sertk.data.release import TableRow, compact_emobox, match_release, read_table
from tests.conftest import REPO

TABLES = sorted(REPO.glob("egs/*/ser1/local/emobox.tsv.gz"))
EMOBOX = REPO.parent / "shared" / "reference" / "emobox"


def test_every_corpus_recipe_carries_a_table():
    assert len(TABLES) >= 1
    for path in TABLES:
        rows = read_table(path)
        assert all(r.fold == "-" or r.fold.startswith("fold") for r in rows), path
        assert all(not any(c.isspace() for c in r.key) for r in rows), path


@pytest.mark.parametrize("path", TABLES, ids=[p.parts[-4] for p in TABLES])
def test_table_is_emobox_exactly(path, tmp_path):
    """Same keys, paths, labels and test folds as EmoBox's tables (where ../shared has them)."""
    src = EMOBOX / path.parts[-4]
    if not src.is_dir():
        pytest.skip(f"{src} not available")
    compact_emobox(src, tmp_path / "t.tsv.gz")
    assert read_table(tmp_path / "t.tsv.gz") == read_table(path)


def _touch(root: Path, rel: str) -> None:
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_bytes(b"")


def test_match_by_path_case_and_name(tmp_path):
    rows = [TableRow("c-a", "A/x1.wav", "n", "fold1"), TableRow("c-b", "B/x2.wav", "n", "fold1"),
            TableRow("c-c", "C/x3.wav", "n", "-"), TableRow("c-d", "D/x4.wav", "n", "-")]
    for rel in ("A/x1.wav", "b/X2.WAV", "other place/C/x3.wav", "copy/x3.wav", "E/x5.flac"):
        _touch(tmp_path, rel)
    m = match_release(tmp_path, rows)
    assert {k: p.relative_to(tmp_path).as_posix() for k, p in m.found.items()} == {
        "c-a": "A/x1.wav", "c-b": "b/X2.WAV", "c-c": "other place/C/x3.wav"}
    assert m.by_name == 1
    assert [(r.key, why.startswith("listed in the table")) for r, why in m.missing] == [
        ("c-d", True)]
    assert sorted(m.extra) == [("E/x5.flac", "not listed in the table"),
                               ("copy/x3.wav", "second copy of other place/C/x3.wav")]


def test_name_fallback_never_takes_a_file_another_row_names(tmp_path):
    """Corpora reuse file names across folders (CASIA's <speaker>/<emotion>/201.wav): a row
    whose file is absent must not take the same-named file of a later row."""
    rows = [TableRow("c-1", "s1/angry/201.wav", "angry", "fold1"),
            TableRow("c-2", "s1/sad/201.wav", "sad", "fold1")]
    _touch(tmp_path, "s1/sad/201.wav")
    m = match_release(tmp_path, rows)
    assert {k: p.relative_to(tmp_path).as_posix() for k, p in m.found.items()} == {
        "c-2": "s1/sad/201.wav"}
    assert [(r.key, why) for r, why in m.missing] == [
        ("c-1", "listed in the table; the release's files of this name all belong to other "
                "rows")]
