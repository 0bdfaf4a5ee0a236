"""What the multimodal models share: modality names, their input tables, the check of a
``modalities`` config and the gathering of each modality's padded input (papers.md sections
17-24; the data side is :mod:`sertk.data.inputs`).

Conventions: the audio stream is the model's ``feats [B, T, D]`` with ``lengths``; the other
modalities arrive in ``inputs`` keyed by their data-dir table: ``text`` (token ids
``[B, L]``, 0 = padding, a vocabulary of ``input_sizes["text"]`` ids) and ``feats_video.scp``
(precomputed frame features ``[B, Tv, Dv]``, ``Dv = input_sizes["feats_video.scp"]``), each
with its own lengths.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from sertk.errors import SertkError
from sertk.models.layers.masking import lengths_to_mask

MODALITIES = ("audio", "text", "video")
TEXT_TABLE = "text"
VIDEO_TABLE = "feats_video.scp"
TABLES = {"text": TEXT_TABLE, "video": VIDEO_TABLE}
TABLE_KINDS = {TEXT_TABLE: "tokens", VIDEO_TABLE: "feats"}
DEFAULT_SIZES = {TEXT_TABLE: 256, VIDEO_TABLE: 512}

Inputs = dict[str, tuple[torch.Tensor, torch.Tensor]]


def check_modalities(model: str, modalities: Sequence[str] | str | None,
                     allowed: Sequence[str] = MODALITIES) -> tuple[str, ...]:
    """``modalities`` as a tuple in the given order; a :class:`SertkError` naming ``model``
    unless it is a non-empty list of distinct names among ``allowed``."""
    if isinstance(modalities, str) or modalities is None:
        raise SertkError(f"{model} modalities must be a non-empty list of "
                         f"{', '.join(allowed)}, got {modalities!r}")
    mods = tuple(modalities)
    bad = [m for m in mods if m not in allowed]
    if not mods or bad or len(set(mods)) != len(mods):
        raise SertkError(f"{model} modalities must be a non-empty list of distinct "
                         f"names among {', '.join(allowed)}, got {list(mods)}")
    return mods


def input_tables(modalities: Sequence[str]) -> dict[str, str]:
    """The extra input tables (and their kinds) the non-audio ``modalities`` read."""
    return {TABLES[m]: TABLE_KINDS[TABLES[m]] for m in modalities if m in TABLES}


def input_sizes(sizes: dict[str, int] | None) -> dict[str, int]:
    """Vocabulary / feature sizes of the extra tables, defaults filled in."""
    return {**DEFAULT_SIZES, **(sizes or {})}


def gather_inputs(model: str, modalities: Sequence[str], feats: torch.Tensor,
                  lengths: torch.Tensor, inputs: Inputs | None) -> Inputs:
    """``{modality: (padded tensor, lengths)}`` for ``modalities``; a missing table is a
    :class:`SertkError` naming the model and the table."""
    out = {}
    for m in modalities:
        if m == "audio":
            out[m] = (feats, lengths)
            continue
        table = TABLES[m]
        if not inputs or table not in inputs:
            raise SertkError(f"model {model} needs the {table} input (modalities "
                             f"{', '.join(modalities)})")
        out[m] = inputs[table]
    return out


def modality_tables(model: str, conf: dict | None, default: Sequence[str],
                    allowed: Sequence[str] = MODALITIES) -> dict[str, str]:
    """A model's ``input_tables_for``: the tables of its configured (or default) modalities."""
    return input_tables(check_modalities(model, (conf or {}).get("modalities", default),
                                         allowed))


def prepare_sequence(x: torch.Tensor, lengths: torch.Tensor, max_len: int | None = None,
                     embedding: torch.nn.Module | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One modality's padded input for an encoder: cut to ``max_len`` steps, token ids
    embedded (padded ids read as 0), padding zeroed; an empty sequence (no word, no face
    found) is one zero step. Returns ``(x [B, T', D], lengths in [1, T'], mask [B, T'])``."""
    lengths = lengths.to(x.device)
    if max_len is not None:
        x = x[:, :max_len]
    mask = lengths_to_mask(lengths.clamp(max=x.shape[1]), x.shape[1])
    if embedding is not None:
        x = embedding(x.masked_fill(~mask, 0))
    x = x.masked_fill(~mask.unsqueeze(-1), 0.0)
    if x.shape[1] == 0:
        x = x.new_zeros(x.shape[0], 1, x.shape[2])
    lengths = lengths.clamp(1, x.shape[1])
    return x, lengths, lengths_to_mask(lengths, x.shape[1])

