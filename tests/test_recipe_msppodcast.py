"""egs/msppodcast: fixture releases (Audios/*.wav, Labels/labels_consensus.csv and
labels_detailed.csv, Transcripts/*.txt; and a release-1.8-like one with labels_concensus.csv)
through local/data.sh and ./run.sh."""

from __future__ import annotations

import csv
import io

from sertk.data.datadir import DataDir
from sertk.data.release import TableRow
from tests import corpus_recipes as cr

LABELS = {"A": "angry", "C": "contempt", "D": "disgust", "F": "fearful", "H": "happy",
          "N": "neutral", "O": "other", "S": "sad", "U": "surprised", "X": "ambiguous"}
# a worker's primary emotion as labels_detailed.csv spells it (workers cannot pick X)
WORKER = {"A": "Angry", "C": "Contempt", "D": "Disgust", "F": "Fear", "H": "Happy",
          "N": "Neutral", "O": "Other-Bored", "S": "Sad", "U": "Surprise", "X": "Neutral"}
TEST_SPEAKERS = [("30", "Male"), ("39", "Female"), ("127", "Male")]
# name, EmoClass, SpkrID, Gender, Split_Set (podcasts 2501+: not in EmoBox's release 1.8)
OTHERS = [("MSP-PODCAST_2501_0001", "H", "1001", "Male", "Train"),
          ("MSP-PODCAST_2501_0002", "A", "1001", "Male", "Train"),
          ("MSP-PODCAST_2502_0001", "N", "Unknown", "Unknown", "Train"),
          ("MSP-PODCAST_2502_0002", "X", "Unknown", "Unknown", "Train"),
          ("MSP-PODCAST_2503_0001", "S", "1002", "Female", "Train"),   # no audio
          ("MSP-PODCAST_2504_0001", "C", "30", "Male", "Train"),       # a tested speaker
          ("MSP-PODCAST_2505_0001", "N", "1003", "Female", "Development"),
          ("MSP-PODCAST_2505_0002", "O", "1003", "Female", "Development"),
          ("MSP-PODCAST_2506_0001", "D", "1004", "Male", "Development"),
          ("MSP-PODCAST_2507_0001", "N", "1005", "Male", "Test2")]


def _stem(key):
    return key.split("-", 1)[1]


def _test_rows(n=None):
    """One table row per label, and a turn split in parts (MSP-PODCAST_0047_0295_0001)."""
    rows = cr.table("msppodcast")
    picked = cr.pick(rows, lambda r: r.emotion, per_speaker=1)
    picked.append(next(r for r in rows if r.key.count("_") == 3))
    return picked[:n]


def _dims(i):
    return f"{2 + i % 5}.2", f"{3 + i % 3}.5", "4.0"


def _csv(path, header, rows, bom_crlf=False):
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n" if bom_crlf else "\n")
    writer.writerow(header)
    writer.writerows(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(("\ufeff" if bom_crlf else "").encode() + buf.getvalue().encode("utf-8"))


def _release(root, old=False, n_test=None):
    """A release with the real CSV formats. Release 1.11/1.12 style: Audios/, labels_consensus
    (BOM, CRLF), per-worker labels_detailed.csv, Transcripts/ (one missing). ``old``: release
    1.8 style (EmoBox's Audio/, labels_concensus.csv, Validation, EmoDetail, no transcripts).
    Quirks: a 44.1 kHz stereo file, an upper-case extension, a table file and a Train file
    missing, a Test2 file, a file without labels, a second copy under Previous_releases_info."""
    tests = _test_rows(n_test)
    absent = tests[-1]
    others = OTHERS if not old else [o for o in OTHERS if o[0] in (OTHERS[0][0], OTHERS[6][0])]
    consensus, detailed, present = [], [], []
    for i, row in enumerate(tests):
        spk, gender = TEST_SPEAKERS[i % 3]
        emo = "H" if i == 0 else row.emotion  # the release relabelled one test file
        consensus.append((_stem(row.key), emo, spk, gender, "Test1"))
    for name, emo, spk, gender, split in others:
        if old and split == "Development":
            split = "Validation"
        consensus.append((name, emo, spk, gender, split))
    audio = root / ("Audio" if old else "Audios")
    csv_rows = []
    for i, (name, emo, spk, gender, split) in enumerate(consensus):
        csv_rows.append([f"{name}.wav", emo, *_dims(i), spk, gender, split])
        for w, label in enumerate((WORKER[emo], "Other-Concerned", "Neutral")):
            act, val, dom = _dims(i + w)
            if old:
                detailed.append([f"{name}.wav", f"WORKER{w + 1:05d}; {label}; Annoyed,Concerned;"
                                 f" A:{act}; V:{val}; D:{dom};"])
            else:
                detailed.append([f"{name}.wav", f"WORKER{w + 1:05d}", label, "Annoyed,Concerned",
                                 act, val, dom])
        if name in (_stem(absent.key), OTHERS[4][0]):
            continue
        if i == 1:
            cr.write_audio(audio / f"{name}.wav", 0.3, sr=44100, channels=2, seed=i)
        elif name == OTHERS[3][0]:
            cr.write_audio(audio / f"{name}.WAV", 0.3, seed=i, fmt="WAV")
        else:
            cr.write_audio(audio / f"{name}.wav", 0.3, seed=i)
        present.append(name)
        if not old and name != OTHERS[0][0]:
            (root / "Transcripts").mkdir(parents=True, exist_ok=True)
            (root / "Transcripts" / f"{name}.txt").write_text(f"words of {name}\r\n")
    header = ["FileName", "EmoClass", "EmoAct", "EmoVal", "EmoDom", "SpkrID", "Gender",
              "Split_Set"]
    if old:
        _csv(root / "Labels" / "labels_concensus.csv", header, csv_rows)
        _csv(root / "Labels" / "labels_detailed.csv", ["FileName", "EmoDetail"], detailed)
    else:
        _csv(root / "Labels" / "labels_consensus.csv", header, csv_rows, bom_crlf=True)
        _csv(root / "Labels" / "labels_detailed.csv", ["FileName", "WorkerID", "EmoClass_Major",
                                                       "EmoClass_Second", "EmoAct", "EmoVal",
                                                       "EmoDom"], detailed)
        cr.write_audio(root / "Previous_releases_information" / "files_removed_from_prev_versions"
                       / f"{OTHERS[0][0]}.wav", 0.3, seed=50)
        cr.write_audio(audio / "MSP-PODCAST_2999_0001.wav", 0.3, seed=51)
    (root / "readme.txt").write_text("MSP-PODCAST Database\n")
    return tests, absent, consensus, present


def _expected(tests, absent, consensus):
    """The rows sertk should keep: table rows found, and Train/Development rows (fold -)."""
    kept = [r for r in tests if r is not absent]
    for name, emo, spk, _, split in consensus[len(tests):]:
        if split != "Test2" and name != OTHERS[4][0] and spk != "30":
            kept.append(TableRow(f"msppodcast-{name}", f"Audio/{name}.wav", emo, "-"))
    return kept


def test_msppodcast_data_and_emobox_fold(tmp_path):
    root = tmp_path / "MSP-PODCAST-Publish-1.12"
    tests, absent, consensus, present = _release(root)
    kept = _expected(tests, absent, consensus)
    proc = cr.run_data("msppodcast", tmp_path / "data", root)
    assert f"{len(kept)} utterances of 7 speakers" in proc.stdout
    assert "1 test files have another EmoClass" in proc.stdout
    assert "utt2gender not given for every utterance" in proc.stdout
    all_ = DataDir(tmp_path / "data" / "all")
    key2utt = {k: u for u, k in all_.table("utt2key").items()}
    assert set(key2utt) == {r.key for r in kept}
    meta = {c[0]: (i, c) for i, c in enumerate(consensus)}
    for row in kept:
        name = _stem(row.key)
        utt, (i, (_, _, spk, _, _)) = key2utt[row.key], meta[name]
        assert all_.utt2emo[utt] == LABELS[row.emotion]  # the table's label for test files
        want = f"spk{int(spk):04d}" if spk.isdigit() else f"pod{name.split('_')[1]}"
        assert all_.utt2spk[utt] == want and utt == f"{want}-{name}"
        assert all_.table("utt2dim")[utt] == " ".join(f"{float(x):g}" for x in _dims(i))
        first = {**LABELS, "X": "neutral"}[meta[name][1][1]]  # the release's class
        assert all_.table("utt2listener_emo")[utt] == (
            f"WORKER00001:{first} WORKER00002:other WORKER00003:neutral")
        assert all_.table("text")[utt] == ("" if name == OTHERS[0][0] else f"words of {name}")
    assert not all_.has("utt2gender")  # Unknown speakers have Unknown gender
    lines = cr.report(tmp_path / "data")
    missing = [f for kind, f, _ in lines if kind == "missing"]
    assert absent.wav in missing and f"Audio/{OTHERS[4][0]}.wav" in missing
    assert len(missing) == len(cr.table("msppodcast")) - len(tests) + 2
    extra = {f: why for kind, f, why in lines if kind == "extra"}
    removed = "Previous_releases_information/files_removed_from_prev_versions"
    assert extra == {
        f"{removed}/{OTHERS[0][0]}.wav": f"second copy of Audios/{OTHERS[0][0]}.wav",
        f"Audios/{OTHERS[9][0]}.wav": "Test2 partition: emobox tests EmoBox's list, trains on "
                                      "Train and validates on Development",
        "Audios/MSP-PODCAST_2999_0001.wav": "not in labels_consensus.csv"}
    skipped = {f.rsplit("/", 1)[-1]: why for kind, f, why in lines if kind == "skipped"}
    assert skipped == {f"{OTHERS[5][0]}.wav": "train file of spk0030, a tested speaker"}
    # dev = the Development partition, train = the Train partition; speaker-independent
    cr.check_folds(tmp_path / "data", kept, speaker_independent=True)
    fold = tmp_path / "data" / "folds" / "fold1"
    for part, split in (("train", "Train"), ("dev", "Development")):
        got = set(DataDir(fold / part).table("utt2key").values())
        assert got == {r.key for r in kept if meta[_stem(r.key)][1][4] == split}
    # or dev speakers drawn from the Train and Development speakers
    cr.run_data("msppodcast", tmp_path / "spk", root, "--dev speakers --dev_speakers 1")
    cr.check_folds(tmp_path / "spk", kept, speaker_independent=True)


def test_msppodcast_release_18_and_stage2(tmp_path):
    root = tmp_path / "msp 1.8"
    tests, absent, consensus, present = _release(root, old=True, n_test=4)
    kept = _expected(tests, absent, consensus)
    proc = cr.run_data("msppodcast", tmp_path / "data", root)
    assert f"{len(kept)} utterances of 5 speakers" in proc.stdout
    all_ = DataDir(tmp_path / "data" / "all")
    key2utt = {k: u for u, k in all_.table("utt2key").items()}
    assert set(key2utt) == {r.key for r in kept}
    gender = {c[0]: c[3][0].lower() for c in consensus}
    assert {u: gender[_stem(k)] for k, u in key2utt.items()} == all_.table("utt2gender")
    assert not all_.has("text")
    utt = key2utt[tests[1].key]
    assert all_.table("utt2listener_emo")[utt].split()[1:] == ["WORKER00002:other",
                                                               "WORKER00003:neutral"]
    dev = DataDir(tmp_path / "data" / "folds" / "fold1" / "dev")
    assert set(dev.table("utt2key").values()) == {f"msppodcast-{OTHERS[6][0]}"}
    cr.run_to_stage2("msppodcast", tmp_path, root)
    assert len(DataDir(tmp_path / "dump" / "logmel64" / "all").table("feats.scp")) == len(kept)


def test_msppodcast_missing_or_malformed_labels(tmp_path):
    (tmp_path / "empty").mkdir()
    proc = cr.run_data("msppodcast", tmp_path / "data", tmp_path / "empty", check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "error: no Labels/labels_consensus.csv" in proc.stderr
    bad = tmp_path / "bad" / "Labels" / "labels_consensus.csv"
    _csv(bad, ["FileName", "EmoClass"], [["MSP-PODCAST_0001_0008.wav", "N"]])
    proc = cr.run_data("msppodcast", tmp_path / "data", tmp_path / "bad", check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert f"{bad}: no column Split_Set" in proc.stderr
