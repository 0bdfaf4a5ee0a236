"""egs/emodb: a fixture release (wav/SSTTTEV.wav) through local/data.sh and ./run.sh."""

from __future__ import annotations

from sertk.data.datadir import DataDir
from tests import corpus_recipes as cr


def _release(root, folds=None):
    """Two files per speaker; quirks: a 24-bit stereo 44.1 kHz file, an upper-case extension,
    a listed file left out, a second copy in another folder, an unlisted file."""
    rows = cr.pick(cr.table("emodb"), lambda r: r.key.split("-")[1][:2], per_speaker=2, folds=folds)
    absent = rows.pop()
    for i, row in enumerate(rows):
        path = root / row.wav
        if i == 0:
            cr.write_audio(path, sr=44100, channels=2, subtype="PCM_24", seed=i)
        elif i == 1:
            cr.write_audio(path.with_suffix(".WAV"), seed=i, fmt="WAV")
        else:
            cr.write_audio(path, seed=i)
    cr.write_audio(root / "copy of wav" / rows[2].wav.split("/")[-1], seed=2)
    cr.write_audio(root / "wav" / "03a99Wz.wav", seed=99)
    return rows, absent


def test_emodb_data_and_emobox_folds(tmp_path):
    root = tmp_path / "emodb release"
    rows, absent = _release(root)
    proc = cr.run_data("emodb", tmp_path / "data", root)
    assert f"{len(rows)} utterances of 10 speakers" in proc.stdout
    all_ = DataDir(tmp_path / "data" / "all")
    key2utt = {k: u for u, k in all_.table("utt2key").items()}
    assert set(key2utt) == {r.key for r in rows}
    labels = {"anger": "angry", "boredem": "bored", "fear": "fearful"}
    for row in rows:
        utt = key2utt[row.key]
        assert all_.utt2emo[utt] == labels.get(row.emotion, row.emotion)
        spk = row.key.split("-")[1][:2]
        assert all_.utt2spk[utt] == f"spk{spk}" and utt.startswith(f"spk{spk}-")
        assert all_.table("utt2gender")[utt] == ("m" if spk in "03 10 11 12 15" else "f")
    assert "Eisschrank" in (tmp_path / "data" / "all" / "text").read_text()
    lines = cr.report(tmp_path / "data")
    missing = [f for kind, f, _ in lines if kind == "missing"]
    assert absent.wav in missing and len(missing) == len(cr.table("emodb")) - len(rows)
    extra = {f: why for kind, f, why in lines if kind == "extra"}
    assert extra == {f"copy of wav/{rows[2].wav.split('/')[-1]}": f"second copy of {rows[2].wav}",
                     "wav/03a99Wz.wav": "not listed in the table"}
    # EmoBox split EmoDB by utterance (every fold tests all 10 speakers): dev is an utterance split
    cr.check_folds(tmp_path / "data", rows, speaker_independent=False)


def test_emodb_loso_and_stage2(tmp_path):
    root = tmp_path / "release"
    rows, _ = _release(root, folds=["fold1", "fold2"])  # 2 folds keep stage 2 short
    cr.run_data("emodb", tmp_path / "loso", root, "--protocol loso --dev_speakers 1")
    cr.check_loso(tmp_path / "loso")
    cr.run_to_stage2("emodb", tmp_path, root)
    assert len(DataDir(tmp_path / "dump" / "logmel64" / "all").table("feats.scp")) == len(rows)


def test_emodb_nothing_usable(tmp_path):
    (tmp_path / "empty").mkdir()
    proc = cr.run_data("emodb", tmp_path / "data", tmp_path / "empty", check=False)
    assert proc.returncode != 0
    assert "error: nothing usable" in proc.stderr and "Traceback" not in proc.stderr
