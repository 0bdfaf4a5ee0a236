"""``sertk data``: validate, fix, split, subset, combine and fold Kaldi data directories."""

from __future__ import annotations

from pathlib import Path

import typer

from sertk.cli.common import init_logging
from sertk.errors import DataError

app = typer.Typer(help="Kaldi data directories: validate, fix, split, subset, combine, folds.",
                  no_args_is_help=True)


@app.command()
def validate(data_dir: Path, audio: bool = typer.Option(True, help="also open every audio file"),
             labels: bool = typer.Option(True, help="require utt2emo")) -> None:
    """Check a data directory like Kaldi's validate_data_dir.sh."""
    from sertk.data.datadir import DataDir
    from sertk.data.datadir import validate as run

    problems = run(data_dir, check_audio=audio, require_labels=labels)
    if problems:
        for p in problems:
            typer.echo(f"ERROR: {p}", err=True)
        raise DataError(f"{data_dir}: {len(problems)} problem(s) found (listed above); first: "
                        f"{problems[0]}")
    d = DataDir(data_dir)
    counts: dict[str, int] = {}
    if d.has("utt2emo"):
        for lab in d.utt2emo.values():
            counts[lab] = counts.get(lab, 0) + 1
    spks = len(set(d.utt2spk.values()))
    typer.echo(f"{data_dir}: OK ({len(d.utts)} utterances, {spks} speakers"
               + (", labels " + " ".join(f"{k}:{v}" for k, v in sorted(counts.items()))
                  if counts else "") + ")")


@app.command()
def fix(data_dir: Path, drop_unreadable: bool = typer.Option(
        False, help="also drop utterances whose audio cannot be read")) -> None:
    """Keep utterances present in every file, sort, rewrite spk2utt; report every drop."""
    from sertk.data.datadir import fix as run

    init_logging()
    drops = run(data_dir, drop_unreadable=drop_unreadable)
    for line in drops:
        typer.echo(line)
    typer.echo(f"{data_dir}: {len(drops)} utterance(s) dropped (originals in .backup/)")


@app.command()
def split(data_dir: Path, nj: int = typer.Option(..., "--nj", help="number of parts"),
          per_spk: bool = typer.Option(False, help="keep speakers whole (split{N}/)")) -> None:
    """Split into DATA/split{N}utt/{1..N} (or split{N}/ with --per-spk)."""
    from sertk.data.datadir import split as run

    for part in run(data_dir, nj, per_spk):
        typer.echo(str(part))


def _read_list(path: Path) -> list[str]:
    if not path.is_file():
        raise DataError(f"list not found: {path}")
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


@app.command()
def subset(src: Path, dst: Path,
           utt_list: Path = typer.Option(None, help="file with one utterance id per line"),
           spk_list: Path = typer.Option(None, help="file with one speaker id per line"),
           spk: str = typer.Option(None, help="space-separated speaker ids")) -> None:
    """Copy the part of SRC for the given utterances or speakers to DST."""
    from sertk.data.datadir import DataDir
    from sertk.data.datadir import subset as run

    spks = _read_list(spk_list) if spk_list else (spk.split() if spk else None)
    utts = _read_list(utt_list) if utt_list else None
    run(src, dst, utts=utts, spks=spks)
    typer.echo(f"{dst}: {len(DataDir(dst).utts)} utterances")


@app.command()
def combine(dst: Path, srcs: list[Path]) -> None:
    """Concatenate data directories SRCS into DST (duplicate keys are errors)."""
    from sertk.data.datadir import DataDir
    from sertk.data.datadir import combine as run

    run(dst, srcs)
    typer.echo(f"{dst}: {len(DataDir(dst).utts)} utterances")


@app.command()
def context(dump_dir: Path) -> None:
    """Write DUMP_DIR's dialogue-context tables (feats_prev_self.scp, feats_prev_other.scp:
    each utterance's previous turn by the same speaker and by the interlocutor, from
    utt2dialog; `sertk feats dump` writes them already)."""
    from sertk.data.dialog import write_context_tables

    rep = write_context_tables(dump_dir)
    if rep is None:
        raise DataError(f"{dump_dir}: needs utt2dialog and feats.scp")
    typer.echo(f"{dump_dir}: {rep.utts} utterances; a previous turn of the same speaker for "
               f"{rep.with_self}, of the interlocutor for {rep.with_other}; "
               f"{rep.outside_dialogs} outside any dialogue")


@app.command()
def conversation(data_dir: Path, out_dir: Path,
                 embeddings: list[Path] = typer.Option(..., "--embeddings",
                                                       help="embedding scp (sertk embed); "
                                                            "repeat for each modality")
                 ) -> None:
    """Write OUT_DIR: per utterance, the embeddings of every turn of its dialogue (utt2dialog)
    in DATA_DIR, side by side, plus a column marking its own turn (leaf_mmt stages 3-4)."""
    from sertk.data.conversation import write_conversation_dir

    rep = write_conversation_dir(data_dir, list(embeddings), out_dir)
    typer.echo(f"{out_dir}: {rep.utts} utterances in {rep.dialogs} conversations "
               f"({rep.outside_dialogs} outside any dialogue, alone), dim {rep.dim}")


@app.command()
def folds(data_dir: Path, out_dir: Path,
          test_speakers: Path = typer.Option(None, help="lines 'FOLD SPK SPK ...': the test "
                                                        "speakers of each fold"),
          test_table: str = typer.Option(None, help="a table of DATA_DIR ('utt FOLD', '-' = "
                                                    "never tested), e.g. utt2fold: the test "
                                                    "utterances of each fold"),
          loso: bool = typer.Option(False, help="leave one speaker out: a fold per speaker"),
          dev_speakers: int = typer.Option(2, help="dev speakers drawn from each fold's "
                                                   "training speakers (0: dev = utterance split)"),
          dev_fraction: float = typer.Option(0.1, help="with --dev-speakers 0: share of "
                                                       "training utterances used for dev"),
          balance_gender: bool = typer.Option(True, help="draw dev speakers across genders "
                                                         "(needs utt2gender)"),
          seed: int = typer.Option(0)) -> None:
    """Write OUT/<fold>/{train,dev,test}; dev speakers never include test speakers."""
    from sertk.data import folds as fl
    from sertk.data.datadir import DataDir

    init_logging()
    if sum(x not in (None, False) for x in (test_speakers, test_table, loso)) != 1:
        raise DataError("sertk data folds: give exactly one of --test-speakers, --test-table, "
                        "--loso")
    d = DataDir(data_dir)
    if test_table:
        parts = fl.make_utt_folds(d, out_dir, fl.folds_from_table(d, test_table), dev_speakers,
                                  dev_fraction, balance_gender, seed)
    else:
        spec = fl.loso_spec(d) if loso else fl.read_fold_spec(test_speakers)
        parts = fl.make_folds(data_dir, out_dir, spec, dev_speakers, dev_fraction,
                              balance_gender, seed)
    for name, sizes in parts.items():
        typer.echo(f"{name}: " + ", ".join(f"{k} {v}" for k, v in sizes.items()))


@app.command()
def synth(wav_dir: Path, data_dir: Path, speakers: int = typer.Option(10),
          utts_per_emotion: int = typer.Option(5), seed: int = typer.Option(0),
          min_dur: float = typer.Option(1.5, help="shortest utterance (s)"),
          max_dur: float = typer.Option(2.5, help="longest utterance (s)"),
          words: int = typer.Option(0, help="words per transcript (0: one per syllable, so "
                                    "the length follows the speaking rate)"),
          audio_valence: float = typer.Option(1.0, help="how much of the valence the audio "
                                              "tells, 0-1 (0: happy/angry and sad/neutral "
                                              "sound alike)")) -> None:
    """Synthesise the small emotional corpus of the mini recipe (sertk.data.synth)."""
    from sertk.data.synth import make_corpus

    if not 0 < min_dur <= max_dur:
        raise DataError(f"need 0 < --min-dur <= --max-dur, got {min_dur} and {max_dur}")
    if words < 0 or not 0 <= audio_valence <= 1:
        raise DataError(f"need --words >= 0 and 0 <= --audio-valence <= 1, got {words} and "
                        f"{audio_valence}")
    make_corpus(wav_dir, data_dir, num_speakers=speakers, utts_per_emotion=utts_per_emotion,
                seed=seed, duration=(min_dur, max_dur), words=words or None,
                audio_valence=audio_valence)
    typer.echo(f"{data_dir}: synthetic corpus written (audio under {wav_dir})")


@app.command()
def trim(src: Path, dst: Path, threshold_db: float = typer.Option(
             40.0, help="frames quieter than the loudest by more than this are silence"),
         margin: float = typer.Option(0.1, help="seconds kept around the speech")) -> None:
    """Trim leading/trailing silence: DST gets a segments file bounding each utterance."""
    from sertk.data.trim import trim as run

    init_logging()
    res = run(src, dst, threshold_db, margin)
    typer.echo(f"{dst}: {res['before']:.1f} s -> {res['after']:.1f} s of audio")


@app.command()
def augment(src: Path, dst: Path,
            kind: str = typer.Option(..., "--type", help="speed, noise or reverb"),
            factors: str = typer.Option(None, help="speed factors, e.g. '0.9 1.0 1.1'"),
            source: Path = typer.Option(None, help="data dir of noises/music or RIRs"),
            snrs: str = typer.Option(None, help="SNRs in dB for noise, e.g. '0 5 10'"),
            prefix: str = typer.Option(None, help="id prefix (default sp{f}-, noise{snr}-, "
                                                  "reverb-)"),
            seed: int = typer.Option(0)) -> None:
    """Write augmented copies of SRC to DST (utt2aug); `sertk feats dump` applies them.
    Combine with the original: sertk data combine OUT SRC DST."""
    from sertk.data.augment_dir import augment as run

    run(src, dst, kind, [float(f) for f in factors.split()] if factors else None, source,
        [float(s) for s in snrs.split()] if snrs else None, prefix, seed)
    from sertk.data.datadir import DataDir

    typer.echo(f"{dst}: {len(DataDir(dst).utts)} augmented utterances ({kind})")


@app.command("from-dir")
def from_dir(audio_dir: Path, dst: Path) -> None:
    """A data dir (wav.scp, utt2spk, utt2dur) of every audio file under AUDIO_DIR, e.g. noises
    or room impulse responses."""
    from sertk.data.augment_dir import from_dir as run

    run(audio_dir, dst)
    typer.echo(f"{dst}: written")


@app.command()
def musan(root: Path, dst: Path) -> None:
    """MUSAN (noise/, music/, speech/) -> DST/{noise,music,speech} data dirs."""
    from sertk.data.augment_dir import musan as run

    for d in run(root, dst):
        typer.echo(f"{d}: written")


@app.command("emobox-table")
def emobox_table(corpus_dir: Path, out: Path) -> None:
    """EmoBox's utterances.tsv + folds.tsv of one corpus -> the recipe's compressed table
    (key, wav, emotion, test fold; read by sertk.data.release)."""
    from sertk.data.release import compact_emobox

    typer.echo(f"{out}: {compact_emobox(corpus_dir, out)} utterances")
