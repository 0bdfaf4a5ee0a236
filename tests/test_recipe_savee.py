"""egs/savee: fixture releases (AudioData/<SPK>/<e><nn>.wav, and Kaggle's flattened
ALL/<SPK>_<e><nn>.wav) through local/data.sh and ./run.sh."""

from __future__ import annotations

from sertk.data.datadir import DataDir
from tests import corpus_recipes as cr

LABELS = {"a": "angry", "d": "disgust", "f": "fearful", "h": "happy", "n": "neutral",
          "sa": "sad", "su": "surprised"}


def _spk(row):
    return row.key.split("-")[1]


def _rows(folds=None):
    """One file per speaker and emotion (the table is sorted by speaker, emotion, number)."""
    return cr.pick(cr.table("savee"), lambda r: (_spk(r), r.emotion), per_speaker=1, folds=folds)


def _audiodata_release(root):
    """The release's layout at 44.1 kHz; quirks: a 24-bit stereo file, an upper-case
    extension, a listed file left out, a second copy in another folder, an unlisted file."""
    rows = _rows()
    absent = rows.pop()
    for i, row in enumerate(rows):
        spk, name = _spk(row), row.wav.split("_", 1)[1]
        path = root / "AudioData" / spk / name
        if i == 0:
            cr.write_audio(path, 0.4, sr=44100, channels=2, subtype="PCM_24", seed=i)
        elif i == 1:
            cr.write_audio(path.with_suffix(".WAV"), 0.4, sr=44100, seed=i, fmt="WAV")
        else:
            cr.write_audio(path, 0.4, sr=44100, seed=i)
    (root / "AudioData" / "Info.txt").write_text("'DC', 'JE', 'JK' and 'KL' are four male "
                                                 "speakers recorded for the SAVEE database\n")
    first = f"AudioData/{_spk(rows[2])}/{rows[2].wav.split('_', 1)[1]}"
    cr.write_audio(root / "AudioData copy" / first.split("/", 1)[1], 0.4, sr=44100, seed=2)
    cr.write_audio(root / "AudioData" / "DC" / "a16.wav", 0.4, sr=44100, seed=99)
    return rows, absent, first


def test_savee_audiodata_layout_and_emobox_folds(tmp_path):
    root = tmp_path / "savee release"
    rows, absent, first = _audiodata_release(root)
    proc = cr.run_data("savee", tmp_path / "data", root)
    assert f"{len(rows)} utterances of 4 speakers" in proc.stdout
    assert f"{len(rows)} table rows matched in the per-speaker layout" in proc.stdout
    all_ = DataDir(tmp_path / "data" / "all")
    key2utt = {k: u for u, k in all_.table("utt2key").items()}
    assert set(key2utt) == {r.key for r in rows}
    assert {all_.utt2emo[u] for u in key2utt.values()} == set(LABELS.values())
    for row in rows:
        utt = key2utt[row.key]
        assert all_.utt2emo[utt] == LABELS[row.emotion]
        assert all_.utt2spk[utt] == _spk(row) and utt == row.key.split("-", 1)[1]
        assert all_.table("utt2gender")[utt] == "m"
    assert not all_.has("text")
    lines = cr.report(tmp_path / "data")
    missing = [f for kind, f, _ in lines if kind == "missing"]
    assert absent.wav in missing and len(missing) == len(cr.table("savee")) - len(rows)
    extra = {f: why for kind, f, why in lines if kind == "extra"}
    assert extra == {f"AudioData copy/{first.split('/', 1)[1]}": f"second copy of {first}",
                     "AudioData/DC/a16.wav": "not listed in the table"}
    # EmoBox's folds each test one speaker (fold1 JE, fold2 KL, fold3 DC, fold4 JK)
    cr.check_folds(tmp_path / "data", rows, speaker_independent=True)
    for fold, spk in {"fold1": "JE", "fold2": "KL", "fold3": "DC", "fold4": "JK"}.items():
        test = DataDir(tmp_path / "data" / "folds" / fold / "test")
        assert set(test.utt2spk.values()) == {spk}


def test_savee_kaggle_layout_loso_and_stage2(tmp_path):
    root = tmp_path / "kaggle"
    rows = _rows(folds=["fold1", "fold2"])  # 2 speakers keep stage 2 short: dev by utterance
    for i, row in enumerate(rows):
        cr.write_audio(root / "ALL" / row.wav, 0.4, sr=44100, seed=i)
    proc = cr.run_data("savee", tmp_path / "loso", root, "--protocol loso --dev_speakers 0")
    assert "per-speaker layout" not in proc.stdout
    assert f"{len(rows)} utterances of 2 speakers" in proc.stdout
    assert not [line for line in cr.report(tmp_path / "loso") if line[0] != "missing"]
    cr.check_loso(tmp_path / "loso")
    cr.run_to_stage2("savee", tmp_path, root, "--dev_speakers 0")
    cr.check_folds(tmp_path / "data", rows, speaker_independent=True)
    assert len(DataDir(tmp_path / "dump" / "logmel64" / "all").table("feats.scp")) == len(rows)


def test_savee_nothing_usable(tmp_path):
    (tmp_path / "empty").mkdir()
    proc = cr.run_data("savee", tmp_path / "data", tmp_path / "empty", check=False)
    assert proc.returncode != 0
    assert "error: nothing usable" in proc.stderr and "Traceback" not in proc.stderr
