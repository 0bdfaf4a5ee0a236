"""egs/casia: a fixture release (<speaker>/<emotion>/<nnn>.wav) through local/data.sh and
./run.sh."""

from __future__ import annotations

from sertk.data.datadir import DataDir
from tests import corpus_recipes as cr

GENDER = {"liuchanhg": "f", "wangzhe": "m", "zhaoquanyin": "f", "zhaozuoxiang": "m"}
LABELS = {"fear": "fearful", "surprise": "surprised"}


def _spk(row):
    return row.key.split("-")[2]


def _release(root, speakers=tuple(GENDER)):
    """Sentence 201 of every emotion of ``speakers`` and sentence 202 of two; quirks: the
    release's upper-case ZhaoZuoxiang folder (the table writes it lower-case), a stereo
    22.05 kHz 24-bit file, a listed file left out, a second copy in another folder, an unlisted
    sentence, a non-audio file.

    CASIA's file names repeat in every folder and sertk.data.release falls back to matching by
    file name, in table order: a listed file left out would take another folder's file of the
    same name if that one came later in the table. The left-out file (202 happy) therefore has
    no namesake here, and the speakers left out come last in the table.
    """
    rows = [r for r in cr.table("casia")
            if _spk(r) in speakers and (r.key.startswith("casia-201-") or r.key in (
                "casia-202-liuchanhg-angry", "casia-202-liuchanhg-fear"))]
    absent = next(r for r in cr.table("casia") if r.key == "casia-202-liuchanhg-happy")
    for i, row in enumerate(rows):
        rel = row.wav.replace("zhaozuoxiang/", "ZhaoZuoxiang/")
        if i == 0:
            cr.write_audio(root / rel, sr=22050, channels=2, subtype="PCM_24", seed=i)
        else:
            cr.write_audio(root / rel, seed=i, seconds=0.3)
    cr.write_audio(root / "CASIA copy" / rows[1].wav, seed=1, seconds=0.3)
    cr.write_audio(root / "wangzhe" / "angry" / "251.wav", seed=7, seconds=0.3)
    (root / "wangzhe" / "angry" / "readme.txt").write_text("not audio\n")
    return rows, absent


def test_casia_data_and_emobox_folds(tmp_path):
    root = tmp_path / "casia release"
    rows, absent = _release(root)
    proc = cr.run_data("casia", tmp_path / "data", root)
    assert f"{len(rows)} utterances of 4 speakers" in proc.stdout
    all_ = DataDir(tmp_path / "data" / "all")
    key2utt = {k: u for u, k in all_.table("utt2key").items()}
    assert set(key2utt) == {r.key for r in rows}
    for row in rows:
        utt = key2utt[row.key]
        assert all_.utt2emo[utt] == LABELS.get(row.emotion, row.emotion)
        spk = _spk(row)
        assert all_.utt2spk[utt] == spk and utt.startswith(f"{spk}-")
        assert all_.table("utt2gender")[utt] == GENDER[spk]
    assert not all_.has("text")
    lines = cr.report(tmp_path / "data")
    missing = [f for kind, f, _ in lines if kind == "missing"]
    assert absent.wav in missing and len(missing) == len(cr.table("casia")) - len(rows)
    extra = {f: why for kind, f, why in lines if kind == "extra"}
    assert set(extra) == {f"CASIA copy/{rows[1].wav}", "wangzhe/angry/251.wav"}
    # every CASIA speaker folder holds a 201.wav: the report names one of the matched files
    assert extra[f"CASIA copy/{rows[1].wav}"].startswith("second copy of ")
    assert extra["wangzhe/angry/251.wav"] == "not listed in the table"
    assert not [line for line in lines if line[0] == "skipped"]
    # EmoBox's 4 folds each test one speaker: speaker-independent
    cr.check_folds(tmp_path / "data", rows, speaker_independent=True)
    for fold, spk in {"fold1": "wangzhe", "fold2": "zhaozuoxiang", "fold3": "liuchanhg",
                      "fold4": "zhaoquanyin"}.items():
        test = DataDir(tmp_path / "data" / "folds" / fold / "test")
        assert set(test.utt2spk.values()) == {spk}


def test_casia_loso_and_stage2(tmp_path):
    root = tmp_path / "release"
    # 2 speakers (folds 1 and 3) keep stage 2 short; dev is then an utterance split
    rows, _ = _release(root, speakers=("liuchanhg", "wangzhe"))
    cr.run_data("casia", tmp_path / "loso", root, "--protocol loso --dev_speakers 0")
    cr.check_loso(tmp_path / "loso")
    cr.run_to_stage2("casia", tmp_path, root, "--dev_speakers 0")
    assert len(DataDir(tmp_path / "dump" / "logmel64" / "all").table("feats.scp")) == len(rows)


def test_casia_nothing_usable(tmp_path):
    (tmp_path / "empty").mkdir()
    proc = cr.run_data("casia", tmp_path / "data", tmp_path / "empty", check=False)
    assert proc.returncode != 0
    assert "error: nothing usable" in proc.stderr and "Traceback" not in proc.stderr
