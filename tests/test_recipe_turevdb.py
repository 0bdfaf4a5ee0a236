"""egs/turevdb: a fixture release (Sound Source/<Emotion>/<actor>_<code>_<word>.wav, a clone
of github.com/Xeonen/TurEV-DB) through local/data.sh and ./run.sh."""

from __future__ import annotations

from pathlib import Path

from sertk.data.datadir import DataDir
from sertk.data.release import TableRow
from tests import corpus_recipes as cr

COPIES = "Model Output for Test Data/testEmotions500HighPass/sound"


def _spk(row: TableRow) -> str:
    return row.wav.split("/")[-1][:4]


def _pick() -> list[TableRow]:
    """Per actor two test rows (fold1) and two training-only rows, of rotating emotions."""
    first: dict[tuple[str, str, str], TableRow] = {}
    for row in cr.table("turevdb"):
        first.setdefault((_spk(row), row.fold, row.emotion), row)
    emotions = ("Angry", "Calm", "Happy", "Sad")
    keep = []
    for k, spk in enumerate(sorted({s for s, _, _ in first})):
        for fold in ("fold1", "-"):
            order = [emotions[(k + j + (2 if fold == "-" else 0)) % 4] for j in range(4)]
            keep += [first[spk, fold, e] for e in order if (spk, fold, e) in first][:2]
    return keep


def _release(root: Path) -> tuple[list[TableRow], TableRow]:
    """Quirks: spaces in folder names, a filtered copy of a test file under "Model Output for
    Test Data" (with a spectrogram image), a 48 kHz stereo file, an upper-case extension, a
    listed file left out, an unlisted file."""
    rows = _pick()
    absent = rows.pop(1)
    for i, row in enumerate(rows):
        path = root / row.wav
        if i == 0:
            cr.write_audio(path, seconds=0.3, sr=48000, channels=2, seed=i)
        elif i == 2:
            cr.write_audio(path.with_suffix(".WAV"), seconds=0.3, seed=i, fmt="WAV")
        else:
            cr.write_audio(path, seconds=0.3, sr=44100, seed=i)
    test_row = next(r for r in rows[3:] if r.fold == "fold1")
    name = test_row.wav.split("/", 1)[1]
    cr.write_audio(root / COPIES / name, seconds=0.3, seed=5)
    (root / COPIES.replace("sound", "plain") / name).parent.mkdir(parents=True)
    (root / COPIES.replace("sound", "plain") / name).with_suffix(".jpg").write_bytes(b"\xff")
    cr.write_audio(root / "Sound Source" / "Calm" / "1157_sk_acik.wav", seconds=0.3, seed=8)
    return rows, absent


def test_turevdb_data_emobox_fold_and_loso(tmp_path):
    root = tmp_path / "TurEV-DB"
    rows, absent = _release(root)
    proc = cr.run_data("turevdb", tmp_path / "data", root)
    assert f"{len(rows)} utterances of 6 speakers" in proc.stdout
    all_ = DataDir(tmp_path / "data" / "all")
    key2utt = {k: u for u, k in all_.table("utt2key").items()}
    assert set(key2utt) == {r.key for r in rows}
    for row in rows:
        utt, spk = key2utt[row.key], _spk(row)
        stem = row.wav.split("/")[-1][:-4]
        assert all_.utt2emo[utt] == row.emotion.lower()
        assert all_.utt2spk[utt] == f"spk{spk}" and utt == f"spk{spk}-{stem}"
        assert all_.table("text")[utt] == stem.split("_")[2].rstrip("0123456789")
    assert not all_.has("utt2gender")
    assert set(all_.utt2emo.values()) == {"angry", "calm", "happy", "sad"}
    lines = cr.report(tmp_path / "data")
    missing = [f for kind, f, _ in lines if kind == "missing"]
    assert absent.wav in missing and len(missing) == len(cr.table("turevdb")) - len(rows)
    extra = {f: why for kind, f, why in lines if kind == "extra"}
    copy = next(r for r in rows[3:] if r.fold == "fold1")
    assert extra == {f"{COPIES}/{copy.wav.split('/', 1)[1]}": f"second copy of {copy.wav}",
                     "Sound Source/Calm/1157_sk_acik.wav": "not listed in the table"}
    # EmoBox's single fold mixes the actors (split by utterance): dev is an utterance split
    cr.check_folds(tmp_path / "data", rows, speaker_independent=False)
    cr.run_data("turevdb", tmp_path / "loso", root, "--protocol loso")
    cr.check_loso(tmp_path / "loso")


def test_turevdb_stage2(tmp_path):
    root = tmp_path / "release"
    rows, _ = _release(root)  # EmoBox has a single fold
    cr.run_to_stage2("turevdb", tmp_path, root)
    assert len(DataDir(tmp_path / "dump" / "logmel64" / "all").table("feats.scp")) == len(rows)
