"""Cross-validation folds with a dev set from the training speakers.

A fold spec lists the test speakers of each fold (``fold1 spkA spkB ...``); a corpus table's
folds come as test utterances per fold (:func:`folds_from_table`, ``utt2fold``), and
leave-one-speaker-out is :func:`loso_spec`. For every fold the
remaining speakers are split into train and dev: ``dev_speakers`` whole speakers (drawn with a
seeded generator, alternating genders when ``utt2gender`` exists) or, with ``dev_speakers=0``,
a ``dev_fraction`` of the training speakers' utterances. Test speakers never reach train or dev;
:func:`make_folds` checks it before writing.
"""

from __future__ import annotations

import logging
import random
import re
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


def folds_from_table(d: DataDir, table: str = "utt2fold") -> dict[str, list[str]]:
    """Test utterances of each fold from a per-utterance table (``utt fold``; ``-`` = never
    tested), e.g. the ``utt2fold`` a corpus recipe writes from the EmoBox table."""
    if not d.has(table):
        raise DataError(f"{d.path / table}: not found (the recipe's data preparation writes it)")
    folds: dict[str, list[str]] = {}
    for utt, fold in d.table(table).items():
        if fold != "-":
            folds.setdefault(fold, []).append(utt)
    if not folds:
        raise DataError(f"{d.path / table}: no utterance is in a test fold")
    return dict(sorted(folds.items(), key=lambda kv: _natural(kv[0])))


def loso_spec(d: DataDir, prefix: str = "fold_") -> dict[str, list[str]]:
    """Leave-one-speaker-out: one fold per speaker, named ``<prefix><speaker>``."""
    return {f"{prefix}{spk}": [spk] for spk in sorted(set(d.utt2spk.values()))}


def _natural(name: str) -> tuple:
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name))


def make_folds(data_dir: str | Path, out_dir: str | Path, spec: dict[str, list[str]],
               dev_speakers: int = 2, dev_fraction: float = 0.1, balance_gender: bool = True,
               seed: int = 0) -> dict[str, dict[str, int]]:
    """Folds whose test parts are the speakers of ``spec`` (``fold -> speakers``)."""
    d = DataDir(data_dir)
    all_spks = set(d.utt2spk.values())
    tests = {}
    for fold, test in spec.items():
        unknown = sorted(set(test) - all_spks)
        if unknown:
            raise DataError(f"fold {fold}: test speakers not in {d.path}: {' '.join(unknown)}")
        tests[fold] = [u for u in d.utts if d.utt2spk[u] in set(test)]
    return make_utt_folds(d, out_dir, tests, dev_speakers, dev_fraction, balance_gender, seed)


def make_utt_folds(d: DataDir, out_dir: str | Path, tests: dict[str, list[str]],
                   dev_speakers: int = 2, dev_fraction: float = 0.1,
                   balance_gender: bool = True, seed: int = 0) -> dict[str, dict[str, int]]:
    """Folds with the given test utterances; each trains on the rest.

    Dev speakers are drawn from the training speakers that have no test utterance in the fold;
    when a fold's split is not speaker-independent (a table that splits by utterance) and too
    few such speakers remain, dev is a ``dev_fraction`` of the training utterances (logged).
    """
    utt2spk = d.utt2spk
    genders = speaker_genders(d) if balance_gender else {}
    summary: dict[str, dict[str, int]] = {}
    for k, (fold, test) in enumerate(tests.items()):
        test_set = set(test)
        unknown = test_set - set(utt2spk)
        if unknown:
            raise DataError(f"fold {fold}: {len(unknown)} test utterances not in {d.path}, "
                            f"e.g. {sorted(unknown)[0]}")
        test_spks = {utt2spk[u] for u in test_set}
        pool = [u for u in d.utts if u not in test_set]
        shared = test_spks & {utt2spk[u] for u in pool}
        clean_spks = sorted({utt2spk[u] for u in pool} - test_spks)
        rng = random.Random(seed * 1000 + k)
        if dev_speakers > 0 and (len(clean_spks) > dev_speakers or not shared):
            dev_spks = set(choose_dev_speakers(clean_spks, dev_speakers, genders, rng))
            dev_utts = [u for u in pool if utt2spk[u] in dev_spks]
            train_utts = [u for u in pool if utt2spk[u] not in dev_spks]
            how = "speakers " + " ".join(sorted(dev_spks))
        else:
            if dev_speakers > 0:
                log.warning("%s: only %d training speakers without test utterances; dev is a "
                            "%.0f%% utterance split of the training set", fold,
                            len(clean_spks), 100 * dev_fraction)
            shuffled = list(pool)
            rng.shuffle(shuffled)
            n_dev = max(1, int(round(dev_fraction * len(shuffled))))
            dev_utts, train_utts = sorted(shuffled[:n_dev]), sorted(shuffled[n_dev:])
            how = "utterance split"
        if not train_utts or not test:
            raise DataError(f"fold {fold}: empty train or test part")
        if set(train_utts) & set(dev_utts) or test_set & set(train_utts + dev_utts):
            raise DataError(f"fold {fold}: internal error, parts overlap")
        if shared:
            log.warning("%s: %d speakers have utterances in both train and test (the fold "
                        "table splits by utterance, not by speaker)", fold, len(shared))
        base = Path(out_dir) / fold
        subset(d.path, base / "train", utts=train_utts)
        subset(d.path, base / "dev", utts=dev_utts)
        subset(d.path, base / "test", utts=sorted(test_set))
        summary[fold] = {"train": len(train_utts), "dev": len(dev_utts), "test": len(test_set)}
        log.info("%s: train %d utts, dev %d utts (%s), test %d utts (%d speakers)", fold,
                 len(train_utts), len(dev_utts), how, len(test_set), len(test_spks))
    return summary
