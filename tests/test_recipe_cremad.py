"""egs/cremad: a fixture release (AudioWAV/AAAA_SSS_EEE_LL.wav + VideoDemographics.csv) through
local/data.sh and ./run.sh (CREMA-D, Cao et al. 2014)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from sertk.data.datadir import DataDir
from sertk.data.release import TableRow
from tests import corpus_recipes as cr

ACTORS = [str(a) for a in range(1001, 1011)]
# the release's VideoDemographics.csv rows of these actors (ActorID, Age, Sex, Race, Ethnicity)
DEMOGRAPHICS = {"1001": (51, "Male"), "1002": (21, "Female"), "1003": (21, "Female"),
                "1004": (42, "Female"), "1005": (29, "Male"), "1006": (58, "Female"),
                "1007": (38, "Female"), "1008": (46, "Female"), "1009": (24, "Female"),
                "1010": (27, "Female")}
LABELS = {"ANG": "angry", "DIS": "disgust", "FEA": "fearful", "HAP": "happy",
          "NEU": "neutral", "SAD": "sad"}


def _actor(row: TableRow) -> str:
    return row.key.split("-")[1]


def _release(root: Path, demographics: bool = True):
    """Two files of each of 10 actors; quirks: a git-lfs pointer stub instead of a wav (a zip
    download), an all-zero file, a listed file left out, the misnamed 1040_ITH_SAD_X.wav of old
    clones, mp3 copies (not read), a demographics table with a BOM and CRLF line ends."""
    rows = cr.pick([r for r in cr.table("cremad") if _actor(r) in ACTORS], _actor, per_speaker=2)
    absent = rows.pop()
    stub, silent = rows[0], rows[2]
    for i, row in enumerate(rows):
        path = root / row.wav
        if row is stub:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:c6f94b25"
                            "92487c7556bd86df7df6e8f4420d1b9c11414aeec9d8e5e640b51495\n"
                            "size 72862\n")
        else:
            cr.write_audio(path, seconds=0.4, seed=i)
    sf.write(root / silent.wav, np.zeros(6400, dtype=np.int16), 16000, subtype="PCM_16")
    cr.write_audio(root / "AudioWAV" / "1040_ITH_SAD_X.wav", seconds=0.4, seed=40)
    (root / "AudioMP3").mkdir()
    (root / "AudioMP3" / "1001_DFA_ANG_XX.mp3").write_bytes(b"ID3")
    if demographics:
        lines = ['"ActorID","Age","Sex","Race","Ethnicity"'] + [
            f'{a},{age},"{sex}","Caucasian","Not Hispanic"'
            for a, (age, sex) in DEMOGRAPHICS.items()]
        (root / "VideoDemographics.csv").write_bytes(
            b"\xef\xbb\xbf" + "\r\n".join(lines).encode() + b"\r\n")
    return rows, absent, stub, silent


def test_cremad_data_and_emobox_fold(tmp_path):
    root = tmp_path / "CREMA-D"
    rows, absent, stub, silent = _release(root)
    proc = cr.run_data("cremad", tmp_path / "data", root)
    used = [r for r in rows if r not in (stub, silent)]
    assert f"{len(used)} utterances of 10 speakers" in proc.stdout
    all_ = DataDir(tmp_path / "data" / "all")
    key2utt = {k: u for u, k in all_.table("utt2key").items()}
    assert set(key2utt) == {r.key for r in used}
    text = all_.table("text")
    for row in used:
        utt, actor = key2utt[row.key], _actor(row)
        assert all_.utt2emo[utt] == LABELS[row.emotion]
        assert all_.utt2spk[utt] == f"spk{actor}" and utt.startswith(f"spk{actor}-")
        assert all_.table("utt2gender")[utt] == DEMOGRAPHICS[actor][1][0].lower()
        assert all_.table("utt2intensity")[utt] == "unspecified"
        assert text[utt] == {"DFA": "Don't forget a jacket"}[row.key.split("-")[2]]
    lines = cr.report(tmp_path / "data")
    missing = [f for kind, f, _ in lines if kind == "missing"]
    assert absent.wav in missing and len(missing) == len(cr.table("cremad")) - len(rows)
    extra = {f: why for kind, f, why in lines if kind == "extra"}
    assert list(extra) == ["AudioWAV/1040_ITH_SAD_X.wav"] and "rename" in extra[
        "AudioWAV/1040_ITH_SAD_X.wav"]
    skipped = {Path(f).name: why for kind, f, why in lines if kind == "skipped"}
    assert "git-lfs pointer" in skipped[Path(stub.wav).name]
    assert "silent" in skipped[Path(silent.wav).name] and len(skipped) == 2
    # EmoBox's one fold splits CREMA-D by utterance: every actor is in train and test
    assert any(r.fold == "fold1" for r in used)
    cr.check_folds(tmp_path / "data", used, speaker_independent=False)


def test_cremad_spk5fold_and_stage2(tmp_path):
    root = tmp_path / "release"
    rows, *_ = _release(root)
    cr.run_data("cremad", tmp_path / "k5", root, "--protocol spk5fold --dev_speakers 2")
    folds = tmp_path / "k5" / "folds"
    assert sorted(p.name for p in folds.iterdir()) == [f"fold{k}" for k in range(1, 6)]
    for k in range(1, 6):
        want = {f"spk{1000 + k}", f"spk{1005 + k}"}
        parts = {s: set(DataDir(folds / f"fold{k}" / s).utt2spk.values())
                 for s in ("train", "dev", "test")}
        assert parts["test"] == want and not (parts["train"] | parts["dev"]) & want
        assert len(parts["dev"]) == 2 and not parts["train"] & parts["dev"]
    cr.run_to_stage2("cremad", tmp_path, root)
    feats = DataDir(tmp_path / "dump" / "logmel64" / "all").table("feats.scp")
    assert len(feats) == len(rows) - 2  # the git-lfs stub and the silent file are skipped


def test_cremad_errors(tmp_path):
    _release(tmp_path / "nodemo", demographics=False)
    proc = cr.run_data("cremad", tmp_path / "data", tmp_path / "nodemo", check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "VideoDemographics.csv not found" in proc.stderr
    (tmp_path / "empty").mkdir()
    proc = cr.run_data("cremad", tmp_path / "data2", tmp_path / "empty", check=False)
    assert proc.returncode != 0
    assert "error: nothing usable" in proc.stderr and "Traceback" not in proc.stderr
