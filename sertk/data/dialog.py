"""Dialogue context of an utterance (Interaction-Aware Attention Network, Yeh et al., ICASSP
2019; ``ar_gru`` and ``maec``, papers.md sections 4 and 27): the same speaker's previous turn
and the interlocutor's previous turn in its conversation (``utt2dialog``: ``<dialog>
<turn>``, turns 1-based).

A dump directory with ``utt2dialog`` gets two feature tables (written by ``sertk feats dump``,
``apply-cmvn`` and the semantic paste whenever they write a ``feats.scp``; ``sertk data
context`` rewrites them): ``feats_prev_self.scp`` and ``feats_prev_other.scp``, mapping each
utterance to the features of its context turn in the same ``feats.scp`` (so later subsets keep
contexts that fall in another subset: the previous turn is audio, not a label), or ``-`` when
there is none (the first turns; an utterance outside ``utt2dialog``). Models read them as
``context`` inputs (:mod:`sertk.data.inputs`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sertk.data.datadir import DataDir
from sertk.data.kaldi_table import write_table
from sertk.errors import DataError

PREV_SELF = "feats_prev_self.scp"
PREV_OTHER = "feats_prev_other.scp"
NO_CONTEXT = "-"


@dataclass
class ContextReport:
    utts: int = 0
    with_self: int = 0
    with_other: int = 0
    outside_dialogs: int = 0  # utterances without a utt2dialog entry (no context)


def previous_turns(utt2dialog: dict[str, str], utt2spk: dict[str, str],
                   source: str = "utt2dialog") -> dict[str, tuple[str | None, str | None]]:
    """``{utt: (same speaker's previous turn, interlocutor's previous turn)}`` (None: none):
    the latest earlier turn of the dialogue by the same speaker, and by another speaker."""
    dialogs: dict[str, list[tuple[int, str]]] = {}
    for utt, value in utt2dialog.items():
        name, turn = value.split()
        try:
            dialogs.setdefault(name, []).append((int(turn), utt))
        except ValueError:
            raise DataError(f"{source}: utterance {utt}: turn {turn!r} is not an integer") \
                from None
    out: dict[str, tuple[str | None, str | None]] = {}
    for name, turns in dialogs.items():
        turns.sort()
        dup = [a for (a, _), (b, _) in zip(turns, turns[1:]) if a == b]
        if dup:
            raise DataError(f"{source}: dialogue {name} has turn {dup[0]} twice")
        last: dict[str, str] = {}  # speaker -> their latest turn so far
        history: list[str] = []
        for _, utt in turns:
            spk = utt2spk[utt]
            other = next((u for u in reversed(history) if utt2spk[u] != spk), None)
            out[utt] = (last.get(spk), other)
            last[spk] = utt
            history.append(utt)
    return out


def write_context_tables(dump_dir: str | Path) -> ContextReport | None:
    """Write ``feats_prev_self.scp`` / ``feats_prev_other.scp`` of a dump directory from its
    ``utt2dialog`` and ``feats.scp`` (None, nothing written, without ``utt2dialog``)."""
    d = DataDir(dump_dir)
    if not (d.has("utt2dialog") and d.has("feats.scp")):
        return None
    feats = d.table("feats.scp")
    unknown = sorted(set(d.table("utt2dialog")) - set(feats))
    if unknown:
        raise DataError(f"{d.path / 'utt2dialog'}: {len(unknown)} utterance(s) without "
                        f"features, first {unknown[0]}")
    turns = previous_turns(d.table("utt2dialog"), d.utt2spk, str(d.path / "utt2dialog"))
    report = ContextReport(utts=len(feats))
    tables: dict[str, dict[str, str]] = {PREV_SELF: {}, PREV_OTHER: {}}
    for utt in feats:
        prev_self, prev_other = turns.get(utt, (None, None))
        report.outside_dialogs += utt not in turns
        report.with_self += prev_self is not None
        report.with_other += prev_other is not None
        tables[PREV_SELF][utt] = feats[prev_self] if prev_self else NO_CONTEXT
        tables[PREV_OTHER][utt] = feats[prev_other] if prev_other else NO_CONTEXT
    for name, table in tables.items():
        write_table(d.path / name, table)
    return report
