"""The synthetic corpus's transcripts (words that tell valence, in part) and dialogues
(speaker pairs taking turns, with an emotional mood that carries over)."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

from sertk.data.datadir import DataDir, validate
from sertk.data.synth import FUNCTION_WORDS, WORD_CLASS, WORDS, make_dialogues, transcript


def test_transcripts_tell_valence_in_part(corpus):
    d = DataDir(corpus)
    validate(corpus)
    text = d.table("text")
    assert set(text) == set(d.utts)
    cls = {w.upper(): c for c, ws in WORDS.items() for w in ws}
    known = set(cls) | {w.upper() for w in FUNCTION_WORDS}
    match = []
    for utt, line in text.items():
        words = line.split()
        assert words and set(words) <= known, (utt, line)
        content = [cls[w] for w in words if w in cls]
        assert content and len(set(content)) == 1  # one class per utterance
        match.append(content[0] == WORD_CLASS[d.utt2emo[utt]])
    assert 0.6 < np.mean(match) < 0.95  # informative, not a giveaway


def test_transcript_has_one_word_per_syllable():
    rng = np.random.default_rng(0)
    assert len(transcript("happy", 7, rng).split()) == 7
    assert len(transcript("sad", 0, rng).split()) == 1


def test_dialogues_alternate_a_speaker_pair_and_keep_a_mood(corpus):
    d = DataDir(corpus)
    dialogs: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for utt, value in d.table("utt2dialog").items():
        name, turn = value.split()
        dialogs[name].append((int(turn), utt))
    assert sum(map(len, dialogs.values())) == len(d.utts)
    same = []
    for name, turns in dialogs.items():
        turns.sort()
        assert [t for t, _ in turns] == list(range(1, len(turns) + 1)), name
        spks = [d.utt2spk[u] for _, u in turns]
        assert set(spks) <= set(name.rsplit("_", 1)[0].split("-"))
        assert all(a != b for a, b in zip(spks, spks[1:])), name  # speakers take turns
        same += [d.utt2emo[a] == d.utt2emo[b] for (_, a), (_, b) in zip(turns, turns[1:])]
    assert np.mean(same) > 0.4  # chance is 0.25 with 4 balanced emotions


def test_a_speaker_without_partner_talks_alone():
    utt2spk = {f"s1_{e}_{k}": "s1" for e in ("a", "b") for k in range(4)}
    utt2spk |= {f"s2_a_{k}": "s2" for k in range(2)} | {"s3_a_0": "s3", "s3_b_0": "s3"}
    utt2emo = {u: u.split("_")[1] for u in utt2spk}
    out = make_dialogues(utt2spk, utt2emo, np.random.default_rng(0), turns=4)
    assert set(out) == set(utt2spk)
    assert sorted(out[u] for u in ("s3_a_0", "s3_b_0")) == ["s3_d01 1", "s3_d01 2"]
    assert {out[u].split()[0].rsplit("_", 1)[0] for u in utt2spk if u[:2] != "s3"} == {"s1-s2"}


def test_ctm_aligns_each_word_to_its_syllable(corpus):
    d = DataDir(corpus)
    from sertk.features.semantic import read_ctm

    ctm = read_ctm(corpus / "ctm")
    assert set(ctm) == set(d.utts)
    durs = d.table("utt2dur")
    for utt, words in ctm.items():
        assert [w.word for w in words] == d.table("text")[utt].split(), utt
        ends = [w.start + w.dur for w in words]
        assert all(w.dur > 0 for w in words) and ends[-1] <= float(durs[utt])
        assert all(e <= b.start for e, b in zip(ends, words[1:])), utt  # no overlaps


def test_fusion_variant_fixes_length_and_blends_the_audio_of_a_valence_pair(tmp_path):
    from sertk.data.synth import AROUSAL_PARTNER, STYLES, audio_style, make_corpus

    for emo, partner in AROUSAL_PARTNER.items():
        assert audio_style(emo, 1.0) == STYLES[emo]
        assert audio_style(emo, 0.0) == audio_style(partner, 0.0)  # the pair sounds alike
        half = audio_style(emo, 0.5)
        assert min(STYLES[emo].rate, STYLES[partner].rate) <= half.rate <= \
            max(STYLES[emo].rate, STYLES[partner].rate)
    with pytest.raises(ValueError, match="audio_valence"):
        audio_style("happy", 1.5)
    d = make_corpus(tmp_path / "wav", tmp_path / "data", num_speakers=2, utts_per_emotion=2,
                    words=5, audio_valence=0.0)
    text = DataDir(d).table("text")
    assert {len(line.split()) for line in text.values()} == {5}
    validate(d)
