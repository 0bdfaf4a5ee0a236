"""Speaker-independent cross-validation folds with a dev set from the training speakers.

A fold spec lists the test speakers of each fold (``fold1 spkA spkB ...``). For every fold the
remaining speakers are split into train and dev: ``dev_speakers`` whole speakers (drawn with a
seeded generator, alternating genders when ``utt2gender`` exists) or, with ``dev_speakers=0``,
a ``dev_fraction`` of the training speakers' utterances. Test speakers never reach train or dev;
:func:`make_folds` checks it before writing.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from pathlib import Path

from sertk.data.datadir import DataDir, subset
from sertk.errors import DataError

log = logging.getLogger(__name__)


def read_fold_spec(path: str | Path) -> dict[str, list[str]]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"fold spec not found: {path}")
    spec: dict[str, list[str]] = {}
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) < 2:
            raise DataError(f"{path}:{lineno}: a fold needs at least one test speaker")
        if fields[0] in spec:
            raise DataError(f"{path}:{lineno}: duplicate fold {fields[0]!r}")
        spec[fields[0]] = fields[1:]
    return spec


def speaker_genders(d: DataDir) -> dict[str, str]:
    if not d.has("utt2gender"):
        return {}
    votes: dict[str, Counter] = {}
    for utt, g in d.table("utt2gender").items():
        votes.setdefault(d.utt2spk[utt], Counter())[g] += 1
    return {spk: c.most_common(1)[0][0] for spk, c in votes.items()}


def choose_dev_speakers(train_spks: list[str], n: int, genders: dict[str, str],
                        rng: random.Random) -> list[str]:
    """``n`` speakers from ``train_spks``; alternate genders when known."""
    if n >= len(train_spks):
        raise DataError(f"{n} dev speakers requested but only {len(train_spks)} training "
                        "speakers")
    pool = sorted(train_spks)
    if not genders:
        return sorted(rng.sample(pool, n))
    by_gender: dict[str, list[str]] = {}
    for spk in pool:
        by_gender.setdefault(genders.get(spk, "?"), []).append(spk)
    for spks in by_gender.values():
        rng.shuffle(spks)
    order = sorted(by_gender)
    chosen: list[str] = []
    while len(chosen) < n:
        for g in order:
            if by_gender[g] and len(chosen) < n:
                chosen.append(by_gender[g].pop())
    return sorted(chosen)


def make_folds(data_dir: str | Path, out_dir: str | Path, spec: dict[str, list[str]],
               dev_speakers: int = 2, dev_fraction: float = 0.1, balance_gender: bool = True,
               seed: int = 0) -> dict[str, dict[str, int]]:
    d = DataDir(data_dir)
    utt2spk = d.utt2spk
    all_spks = sorted(set(utt2spk.values()))
    genders = speaker_genders(d) if balance_gender else {}
    summary: dict[str, dict[str, int]] = {}
    for k, (fold, test) in enumerate(spec.items()):
        unknown = sorted(set(test) - set(all_spks))
        if unknown:
            raise DataError(f"fold {fold}: test speakers not in {d.path}: {' '.join(unknown)}")
        rng = random.Random(seed * 1000 + k)
        train_spks = [s for s in all_spks if s not in set(test)]
        if dev_speakers > 0:
            dev_spks = choose_dev_speakers(train_spks, dev_speakers, genders, rng)
            train_spks = [s for s in train_spks if s not in set(dev_spks)]
            train_utts = [u for u in d.utts if utt2spk[u] in set(train_spks)]
            dev_utts = [u for u in d.utts if utt2spk[u] in set(dev_spks)]
        else:
            pool = [u for u in d.utts if utt2spk[u] in set(train_spks)]
            rng.shuffle(pool)
            n_dev = max(1, int(round(dev_fraction * len(pool))))
            dev_utts, train_utts = sorted(pool[:n_dev]), sorted(pool[n_dev:])
        test_utts = [u for u in d.utts if utt2spk[u] in set(test)]
        test_set = set(test)
        leaked = {utt2spk[u] for u in train_utts + dev_utts} & test_set
        if leaked or set(train_utts) & set(dev_utts):
            raise DataError(f"fold {fold}: internal error, test speakers {leaked} leaked")
        base = Path(out_dir) / fold
        subset(d.path, base / "train", utts=train_utts)
        subset(d.path, base / "dev", utts=dev_utts)
        subset(d.path, base / "test", utts=test_utts)
        summary[fold] = {"train": len(train_utts), "dev": len(dev_utts), "test": len(test_utts)}
        log.info("%s: train %d utts, dev %d utts (%s), test %d utts (speakers %s)", fold,
                 len(train_utts), len(dev_utts),
                 "speakers " + " ".join(sorted({utt2spk[u] for u in dev_utts}))
                 if dev_speakers else "utterance split", len(test_utts), " ".join(test))
    return summary
