#!/usr/bin/env python3
"""Semantic features for ``semantic_fusion`` (Tzirakis et al., ICASSP 2021; papers.md 13).

    semantic_feats.py learn-map SPEECH_VEC TEXT_VEC W.npy [options]
    semantic_feats.py tokens CTM OUT.txt (--word-vectors VEC | --random-dim N)
    semantic_feats.py make WAVE_DUMP OUT_DIR --ctm CTM --embeddings TOKENS_VEC [--map W.npy]
    semantic_feats.py paste WAVE_DUMP SEM_DIR OUT_DUMP [--tolerance 1]

``learn-map``: the map W from the Speech2Vec space (SPEECH_VEC, word2vec text file, one
vector per word type) to the Word2Vec space (TEXT_VEC): adversarial training, then Procrustes
refinement on a dictionary (sertk.text.cross_modal).
``tokens``: per-token vectors keyed ``<utt>-<k>`` from the CTM's words, for corpora without
speech embeddings: each word's vector from a word2vec/GloVe text file, or a fixed random
vector per word type (sertk.features.semantic.write_token_vectors).
``make``: frame-level semantic features W s of the per-token speech embeddings (keys
``<utt>-<k>``, k = 1-based word position in the utterance's CTM lines) repeated over each
word's frames, zeros elsewhere, at WAVE_DUMP's frame rate and frame counts
(sertk.features.semantic).
``paste``: OUT_DUMP = [WAVE_DUMP | SEM_DIR] features with WAVE_DUMP's tables, ready for
``sertk train`` (paste.yaml gives the model's wave_dim and semantic_dim).
"""

from __future__ import annotations

import argparse
import logging
import sys

from sertk.errors import SertkError


def learn_map(args: argparse.Namespace) -> None:
    from sertk.text.cross_modal import AdversarialConfig, learn_map, load_embeddings, save_map

    sw, s = load_embeddings(args.speech_vec, args.max_words)
    tw, t = load_embeddings(args.text_vec, args.max_words)
    adv = None if args.no_adversarial else AdversarialConfig(
        epochs=args.epochs, iterations=args.iterations, batch_size=args.batch_size,
        dis_steps=args.dis_steps, hidden=args.hidden, beta=args.beta, seed=args.seed)
    w, summary = learn_map(sw, s, tw, t, adv, args.dictionary, args.refine_iterations,
                           args.max_pairs, normalize=not args.no_normalize)
    save_map(args.out, w)
    acc = summary.get("dis_accuracy")
    print(f"{args.out}: W {w.shape[0]} x {w.shape[1]} from {len(sw)} speech and {len(tw)} "
          f"text vectors; dictionary pairs {summary.get('dictionary_pairs', 0)}; "
          f"orthogonality error {summary['orthogonality_error']:.2e}"
          + (f"; discriminator accuracy per epoch {[round(a, 3) for a in acc]}" if acc else ""))


def tokens(args: argparse.Namespace) -> None:
    from sertk.features.semantic import write_token_vectors

    rep = write_token_vectors(args.ctm, args.out, args.word_vectors, args.random_dim, args.seed)
    print(f"{args.out}: {rep.tokens} tokens of {rep.types} word types; "
          f"{len(rep.missing)} word types without a vector (left out, zeros in make)"
          + (f", first {rep.missing[0]!r}" if rep.missing else ""))


def make(args: argparse.Namespace) -> None:
    from pathlib import Path

    from sertk.features.semantic import make_semantic_feats

    shift = args.frame_ms / 1000.0 if args.frame_ms else None
    rep = make_semantic_feats(args.ctm, args.embeddings, Path(args.wave_dump) / "feats.scp",
                              args.out_dir, args.map, shift, normalize=not args.no_normalize)
    print(f"{args.out_dir}: {rep.num_utts} utterances, dim {rep.dim}, {rep.tokens} words; "
          f"{len(rep.missing_tokens)} without an embedding (zeros"
          + (f", first {rep.missing_tokens[0]}" if rep.missing_tokens else "") + "); "
          f"{rep.utts_without_words} utterances without words (all zeros); "
          f"{rep.words_past_end} words past the utterance's end (dropped)")


def paste(args: argparse.Namespace) -> None:
    from sertk.features.semantic import paste_dirs

    rep = paste_dirs(args.wave_dump, args.sem_dir, args.out_dump, args.tolerance)
    print(f"{args.out_dump}: {rep.num_utts} utterances, wave_dim {rep.dims[0]} + semantic_dim "
          f"{rep.dims[1]}; {rep.adjusted} padded/truncated to the first stream's frames, "
          f"{len(rep.large)} by more than {args.tolerance} frame(s)"
          + (f" (first {rep.large[0][0]}: {rep.large[0][1]} vs {rep.large[0][2]})"
             if rep.large else "")
          + (f"; {rep.only_second} utterances only in {args.sem_dir} left out"
             if rep.only_second else ""))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="semantic_feats.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("learn-map", help="learn W: speech space -> text space")
    m.add_argument("speech_vec")
    m.add_argument("text_vec")
    m.add_argument("out", help="W.npy ([text_dim, speech_dim])")
    m.add_argument("--dictionary", default="identical",
                   help="identical | mutual_nn | FILE of 'speech_word text_word' pairs")
    m.add_argument("--no-adversarial", action="store_true",
                   help="skip adversarial training (W starts at the identity)")
    m.add_argument("--refine-iterations", type=int, default=5)
    m.add_argument("--max-pairs", type=int, default=15000)
    m.add_argument("--max-words", type=int, default=200000, help="read the first N vectors")
    m.add_argument("--epochs", type=int, default=5)
    m.add_argument("--iterations", type=int, default=1000)
    m.add_argument("--batch-size", type=int, default=32)
    m.add_argument("--dis-steps", type=int, default=5)
    m.add_argument("--hidden", type=int, default=2048)
    m.add_argument("--beta", type=float, default=0.001)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--no-normalize", action="store_true", help="keep the vectors' lengths")
    m.set_defaults(func=learn_map)
    t = sub.add_parser("tokens", help="per-token vectors of the CTM's words")
    t.add_argument("ctm")
    t.add_argument("out")
    g = t.add_mutually_exclusive_group(required=True)
    g.add_argument("--word-vectors", default=None, help="word2vec/GloVe text file")
    g.add_argument("--random-dim", type=int, default=0,
                   help="a fixed random unit vector of this size per word type")
    t.add_argument("--seed", type=int, default=0)
    t.set_defaults(func=tokens)
    k = sub.add_parser("make", help="frame-level semantic features from a CTM")
    k.add_argument("wave_dump", help="dump dir whose feats.scp gives the frame counts")
    k.add_argument("out_dir")
    k.add_argument("--ctm", required=True, help="utt channel start dur word [conf]")
    k.add_argument("--embeddings", required=True, help="per-token vectors keyed <utt>-<k>")
    k.add_argument("--map", default=None, help="W.npy (default: vectors used as they are)")
    k.add_argument("--frame-ms", type=float, default=None,
                   help="frame shift (default: WAVE_DUMP/feats.yaml)")
    k.add_argument("--no-normalize", action="store_true", help="do not scale to unit length")
    k.set_defaults(func=make)
    a = sub.add_parser("paste", help="[WAVE_DUMP | SEM_DIR] features into OUT_DUMP")
    a.add_argument("wave_dump")
    a.add_argument("sem_dir")
    a.add_argument("out_dump")
    a.add_argument("--tolerance", type=int, default=1,
                   help="frame-count differences above this are reported")
    a.set_defaults(func=paste)
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        args.func(args)
    except SertkError as exc:
        sys.exit(f"semantic_feats.py: error: {exc}")


if __name__ == "__main__":
    main()
