"""``sertk feats``: dump features to ark/scp, compute CMVN statistics, list front ends."""

from __future__ import annotations

from pathlib import Path

import typer

from sertk.cli.common import init_logging

app = typer.Typer(help="Features: dump to Kaldi ark/scp, CMVN statistics, list front ends.",
                  no_args_is_help=True)


def _check_scp_path(out_dir: Path) -> None:
    """Kaldi scp lines are ``key path``: an output directory whose absolute path holds
    whitespace would give unreadable feats.scp lines, so it is refused before any work."""
    full = str(out_dir.resolve())
    if any(c.isspace() for c in full):
        from sertk.errors import DataError

        raise DataError(f"{full}: output directory path contains whitespace, which Kaldi scp "
                        "files (key path) cannot hold; choose a path without spaces")


@app.command()
def dump(data_dir: Path, dump_dir: Path,
         conf: Path = typer.Option(..., "--conf", help="feature config (conf/feats/*.yaml)"),
         nj: int = typer.Option(1, "--nj", help="parallel jobs"),
         skip_bad: bool = typer.Option(False, help="skip unreadable utterances (counted, listed "
                                                   "in DUMP/skipped) instead of stopping"),
         progress: bool = typer.Option(True, help="show a progress bar"),
         job: int = typer.Option(None, help="compute only part JOB of --nj (a job array's "
                                            "task; then --merge)"),
         merge: bool = typer.Option(False, help="write the tables from the --nj finished "
                                                 "parts")) -> None:
    """Compute features for DATA_DIR into DUMP_DIR/feats.{ark,scp} + utt2num_frames.

    On a cluster: `$cmd JOB=1:N log/dump.JOB.log sertk feats dump --nj N --job JOB ...`,
    then `sertk feats dump --nj N --merge ...` with the same DATA_DIR, DUMP_DIR and --conf."""
    from sertk.errors import SertkError
    from sertk.features import FeatureConfig
    from sertk.features.dump import dump as run

    init_logging()
    if job is not None and merge:
        raise SertkError("give --job or --merge, not both")
    _check_scp_path(dump_dir)
    rep = run(data_dir, dump_dir, FeatureConfig.load(conf), nj=nj, skip_bad=skip_bad,
              progress=progress, job=job, merge=merge)
    what = f"part {job} of {nj}: " if job is not None else ""
    frames = "" if job is not None else f", {rep.num_frames} frames, dim {rep.dim}"
    typer.echo(f"{dump_dir}: {what}{rep.num_utts} utterances{frames}"
               + (f", {len(rep.skipped)} skipped" if rep.skipped else ""))


@app.command()
def cmvn(dump_dir: Path, out: Path = typer.Option(None, help="default: DUMP_DIR/cmvn.ark "
                                                             "(DUMP_DIR/cmvn_spk.ark with "
                                                             "--per-spk)"),
         per_spk: bool = typer.Option(False, help="one [2, D+1] matrix per speaker")) -> None:
    """CMVN statistics over DUMP_DIR/feats.scp: global (Kaldi [2, D+1] matrix) or per
    speaker (an ark keyed by speaker)."""
    from sertk.features.cmvn import compute_global_stats, compute_speaker_stats

    if per_spk:
        out = out or dump_dir / "cmvn_spk.ark"
        stats = compute_speaker_stats(dump_dir, out)
        typer.echo(f"{out}: statistics of {len(stats)} speakers")
        return
    out = out or dump_dir / "cmvn.ark"
    stats = compute_global_stats(dump_dir / "feats.scp", out)
    typer.echo(f"{out}: {int(stats[0, -1])} frames, dim {stats.shape[1] - 1}")


@app.command("apply-cmvn")
def apply_cmvn(src: Path, dst: Path,
               stats: Path = typer.Option(..., help="cmvn.ark (global) or cmvn_spk.ark"),
               per_spk: bool = typer.Option(False, help="stats are per speaker"),
               norm_vars: bool = typer.Option(True)) -> None:
    """Write normalised features of SRC to DST (Kaldi apply-cmvn), e.g. per-speaker CMVN.
    Per-utterance and sliding-window CMVN are feature-config options instead."""
    from sertk.features.cmvn import apply_cmvn as run

    _check_scp_path(dst)
    run(src, dst, stats, per_spk, norm_vars)
    typer.echo(f"{dst}: normalised features written")


@app.command("list")
def list_() -> None:
    """Every registered front end and augmentation with a one-line summary."""
    from sertk.augment import AUGMENTS
    from sertk.features import FEATURES, LEARNABLE_FRONT_ENDS

    typer.echo("front ends:")
    for e in FEATURES.entries():
        typer.echo(f"  {e.name:<20} {e.summary}")
    typer.echo("learnable front ends (nn.Module layers trained inside a model, not dumped):")
    for name, summary in LEARNABLE_FRONT_ENDS:
        typer.echo(f"  {name:<20} {summary}")
    typer.echo("augmentations:")
    for e in AUGMENTS.entries():
        typer.echo(f"  {e.name:<20} {e.summary}")
