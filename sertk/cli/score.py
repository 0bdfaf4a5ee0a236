"""``sertk score`` (one test set or folds aggregated), ``sertk predict``, ``sertk pack`` and
``sertk pack-info``."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import typer

from sertk.errors import SertkError


def register(app: typer.Typer) -> None:
    @app.command()
    def score(ref: Path = typer.Option(None, help="reference utt2emo"),
              hyp: Path = typer.Option(None, help="hypotheses: 'utt label' text or .jsonl"),
              labels: Path = typer.Option(None, help="label list (default: labels in ref)"),
              out_dir: Path = typer.Option(..., help="where results.json, confusion.{txt,png} "
                                                     "go"),
              folds: list[Path] = typer.Option(None, "--fold", help="results.json of one fold "
                                                                     "(repeat to aggregate)"),
              title: str = typer.Option("", help="title of the confusion-matrix picture"),
              markdown: Path = typer.Option(None, help="with --fold: also write a Markdown "
                                                       "table (e.g. EXP/RESULTS.md)"),
              command: str = typer.Option("", help="command to quote in the Markdown"),
              subset: bool = typer.Option(False, help="score only the reference utterances "
                                                      "whose label is in --labels (a model of "
                                                      "fewer classes); the others are counted"),
              dim: bool = typer.Option(False, "--dim", help="dimensional: --ref utt2dim, --hyp "
                                                            "'utt a v d'; CCC, MSE, Pearson "
                                                            "and a scatter plot")
              ) -> None:
        """WA, UA, macro-F1, per-class recall, confusion matrix (text + PNG); or, with
        --fold, mean ± std over folds and the pooled confusion matrix. With --dim: CCC, MSE
        and Pearson's r per dimension (arousal, valence, dominance)."""
        from sertk.data.dataset import read_labels
        from sertk.data.kaldi_table import read_table
        from sertk.scoring import aggregate, read_hyp, summary_line, write_results
        from sertk.scoring import score as run

        if folds:
            results = []
            for f in folds:
                if not f.is_file():
                    raise SertkError(f"fold results not found: {f}")
                results.append(json.loads(f.read_text()))
            if results[0].get("task") == "dimensional":
                _aggregate_dims(results, out_dir, markdown,
                                [f.parent.parent.name for f in folds], title, command)
                return
            agg = aggregate(results, [str(f) for f in folds])
            out_dir.mkdir(parents=True, exist_ok=True)
            (out_dir / "results.json").write_text(json.dumps(agg, indent=2) + "\n")
            write_results(agg["pooled"], out_dir / "pooled", title or "pooled over folds")
            if markdown:
                from sertk.scoring import results_markdown

                names = [f.parent.parent.name for f in folds]
                secs = []
                for f in folds:  # EXP/<fold>/decode_test/results.json -> EXP/<fold>/train_seconds
                    t = f.parent.parent / "train_seconds"
                    secs.append(float(t.read_text()) if t.is_file() else None)
                markdown.write_text(results_markdown(agg, names, secs, title, command))
            line = "  ".join(f"{k} {100 * agg[k]['mean']:.2f} ± {100 * agg[k]['std']:.2f}"
                             for k in ("UA", "WA", "macro_F1"))
            typer.echo(f"{len(results)} folds: {line}")
            return
        if ref is None or hyp is None:
            raise SertkError("give --ref and --hyp (or --fold ... to aggregate)")
        if dim:
            _score_dims(ref, hyp, out_dir, title)
            return
        refs = read_table(ref, 2, 2)
        lab = read_labels(labels) if labels else sorted(set(refs.values()))
        hyps = read_hyp(hyp)
        left = ""
        if subset:
            if not labels:
                raise SertkError("--subset needs --labels")
            out = {u for u, r in refs.items() if r not in lab}
            refs = {u: r for u, r in refs.items() if u not in out}
            hyps = {u: h for u, h in hyps.items() if u not in out}
            counts = Counter(r for u, r in read_table(ref, 2, 2).items() if u in out)
            left = (f" ({len(out)} utterances of other labels not scored: "
                    + ", ".join(f"{k} {n}" for k, n in sorted(counts.items())) + ")"
                    if out else "")
        res = run(refs, hyps, lab)
        if left:
            res["not_scored"] = sum(counts.values())
        write_results(res, out_dir, title)
        typer.echo(summary_line(res) + left)

    def _score_dims(ref: Path, hyp: Path, out_dir: Path, title: str) -> None:
        from sertk.scoring_dim import plot_scatter, read_dims, score_dims, summary_dims

        refs, hyps = read_dims(ref), read_dims(hyp)
        res = score_dims(refs, hyps)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "results.json").write_text(json.dumps(res, indent=2) + "\n")
        plot_scatter(refs, hyps, out_dir / "scatter.png", title)
        typer.echo(f"{summary_dims(res)}  ({res['num_utts']} utts)")

    def _aggregate_dims(results: list[dict], out_dir: Path, markdown: Path | None,
                        names: list[str], title: str, command: str) -> None:
        from sertk.scoring_dim import aggregate_dims, results_markdown_dims, summary_dims

        if any(r.get("task") != "dimensional" for r in results):
            raise SertkError("aggregate: dimensional and categorical fold results mixed")
        agg = aggregate_dims(results)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "results.json").write_text(json.dumps(agg, indent=2) + "\n")
        if markdown:
            markdown.write_text(results_markdown_dims(agg, names, title, command))
        typer.echo(f"{len(results)} folds: {summary_dims(agg)}")

    @app.command()
    def predict(model: Path = typer.Option(..., help="experiment dir or packed model.zip"),
                data: Path = typer.Option(..., help="dump directory (feats.scp)"),
                out_dir: Path = typer.Option(..., help="posteriors.jsonl and hyp.txt go here"),
                device: str = typer.Option("cpu"), batch_size: int = typer.Option(32),
                progress: bool = typer.Option(True)) -> None:
        """Posteriors for dumped features (recipe stage 4)."""
        from sertk.infer.packed import load_packed
        from sertk.infer.recognizer import predict_dump

        hyp = predict_dump(load_packed(model, device), data, out_dir, device, batch_size,
                           progress)
        typer.echo(f"{out_dir}: {len(hyp)} utterances")

    @app.command()
    def embed(model: Path = typer.Option(..., help="experiment dir or packed model.zip"),
              data: Path = typer.Option(..., help="dump directory (feats.scp)"),
              out_dir: Path = typer.Option(..., help="embeddings.ark/scp go here"),
              device: str = typer.Option("cpu"), batch_size: int = typer.Option(32),
              progress: bool = typer.Option(True)) -> None:
        """Utterance embeddings of a staged model's stage (e.g. leaf_mmt audio/text), the
        input of its next stage (`sertk data conversation`)."""
        from sertk.infer.embed import write_embeddings
        from sertk.infer.packed import load_packed

        n = write_embeddings(load_packed(model, device), data, out_dir, device, batch_size,
                             progress)
        typer.echo(f"{out_dir}/embeddings.scp: {n} utterances")

    @app.command()
    def pack(exp: Path = typer.Option(..., help="trained experiment directory"),
             out: Path = typer.Option(..., help="output model.zip"),
             corpus: str = typer.Option(None, help="training corpus name for the manifest "
                                                   "(default: from egs/<corpus>/ in the paths)")
             ) -> None:
        """Pack config, labels, CMVN, front end and weights into one zip for `sertk infer`,
        with a manifest.json (checksums and metadata; see `sertk pack-info`)."""
        from sertk.infer.packed import load_packed
        from sertk.infer.packed import pack as run

        run(exp, out, corpus=corpus)
        pm = load_packed(out)
        typer.echo(f"{out}: {pm.config['model']['name']}, {len(pm.labels)} classes "
                   f"({' '.join(pm.labels)}), features {pm.feats.name}")

    @app.command("pack-info")
    def pack_info(model: Path = typer.Argument(..., help="packed model.zip, experiment dir, "
                                                         "or the name of a shipped model"),
                  as_json: bool = typer.Option(False, "--json", help="print one JSON object")
                  ) -> None:
        """What a packed model is (sertk version, classes, front end, training corpus,
        results) and its members with sizes and checksum status; exits 1 if a member does not
        match the pack's manifest.json."""
        from sertk.infer.manifest import format_info, info, problem_message
        from sertk.infer.packed import resolve_model

        path = resolve_model(model)
        res = info(path)
        typer.echo(json.dumps(res, indent=2) if as_json else format_info(res))
        if res["problems"]:
            raise SertkError(problem_message(path, res["problems"]))
