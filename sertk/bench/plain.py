"""The plain code a user would write instead of sertk, run by ``sertk bench`` as child
processes so that both sides pay the same interpreter start-up::

    python -m sertk.bench.plain feats NAME WAV_SCP OUT_DIR      # one process, one file at a time
    python -m sertk.bench.plain infer MODEL WAV_LIST OUT_JSONL  # one file at a time
    python -m sertk.bench.plain ddp FEATS_SCP UTT2EMO OUT_JSON --nproc N ...

``feats``: soundfile, torchaudio resampling, the front end (torchaudio.compliance.kaldi,
kaldi-native-fbank or torchaudio/torch transforms with the parameters of sertk's config) and
kaldiio's WriteHelper. ``infer``: load, resample, trim as the model was trained, the model's
front end, one forward pass per file. ``ddp``: features held in memory, padded batches, a
DistributedDataParallel loop over gloo started with torch.multiprocessing. Each prints one JSON
line of figures.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import time
from pathlib import Path
from typing import Callable

SAMPLE_RATE = 16000
INT16 = 32768.0


def frontend(name: str) -> Callable:
    """A waveform ``[samples]`` at 16 kHz -> ``[frames, dim]`` written the plain way, with
    the parameters of the sertk config of the same name (:data:`sertk.bench.feats.FRONT_ENDS`)."""
    import torch
    import torchaudio
    import torchaudio.compliance.kaldi as kaldi

    if name == "fbank":
        return lambda x: kaldi.fbank(x[None] * INT16, num_mel_bins=80, dither=0.0,
                                     energy_floor=0.0, sample_frequency=SAMPLE_RATE)
    if name == "fbank_knf":
        return _knf_fbank()
    if name == "mfcc":
        return lambda x: kaldi.mfcc(x[None] * INT16, num_ceps=40, num_mel_bins=40, dither=0.0,
                                    energy_floor=0.0, sample_frequency=SAMPLE_RATE)
    if name == "logmel":
        mel = torchaudio.transforms.MelSpectrogram(SAMPLE_RATE, n_fft=512, win_length=400,
                                                   hop_length=160, f_min=20, f_max=8000,
                                                   n_mels=64, center=False)
        return lambda x: mel(x).clamp_min(1e-10).log().T
    if name == "spectrogram":
        win = torch.hamming_window(256, periodic=False)
        return lambda x: torch.stft(x, 256, 128, 256, win, center=False, return_complex=True
                                    ).abs().square()[:129].clamp_min(1e-10).log().T
    raise SystemExit(f"no plain front end {name!r}")


def _knf_fbank() -> Callable:
    import kaldi_native_fbank as knf
    import numpy as np
    import torch

    opts = knf.FbankOptions()
    opts.frame_opts.dither = 0.0
    opts.frame_opts.samp_freq = SAMPLE_RATE
    opts.mel_opts.num_bins = 80

    def run(x: torch.Tensor) -> torch.Tensor:
        fb = knf.OnlineFbank(opts)
        fb.accept_waveform(SAMPLE_RATE, (x * INT16).numpy())
        fb.input_finished()
        return torch.from_numpy(np.stack([fb.get_frame(i) for i in range(fb.num_frames_ready)]))

    return run


def load_16k(path: str):
    """A file as a mono float32 tensor at 16 kHz (channels averaged)."""
    import soundfile as sf
    import torch
    import torchaudio

    wav, sr = sf.read(path, dtype="float32", always_2d=True)
    x = torch.from_numpy(wav.mean(axis=1))
    return torchaudio.functional.resample(x, sr, SAMPLE_RATE) if sr != SAMPLE_RATE else x


def feats(name: str, wav_scp: Path, out_dir: Path) -> dict:
    import kaldiio

    fn = frontend(name)
    out_dir.mkdir(parents=True, exist_ok=True)
    utts = frames = dim = 0
    spec = f"ark,scp:{out_dir / 'feats.ark'},{out_dir / 'feats.scp'}"
    with kaldiio.WriteHelper(spec) as writer:
        for line in wav_scp.read_text().splitlines():
            key, path = line.split(maxsplit=1)
            f = fn(load_16k(path.strip()))
            writer(key, f.numpy())
            utts, frames, dim = utts + 1, frames + f.shape[0], f.shape[1]
    return {"utts": utts, "frames": frames, "dim": dim}


def infer(model: str, wav_list: Path, out: Path) -> dict:
    import torch

    from sertk.data.trim import speech_span
    from sertk.features.registry import build_frontend
    from sertk.infer.packed import load_packed

    packed = load_packed(model)
    if packed.config.get("input_sizes") or packed.feats.speaker_cmvn:
        raise SystemExit("the plain loop handles audio-only models without speaker CMVN")
    fe, trim, sr = build_frontend(packed.feats), packed.feats.trim, packed.feats.sample_rate
    n = 0
    with torch.inference_mode(), out.open("w") as fh:
        for path in wav_list.read_text().split():
            x = load_16k(path) if sr == SAMPLE_RATE else None
            if x is None:
                raise SystemExit(f"the plain loop reads {SAMPLE_RATE} Hz models only")
            if trim:
                s, e = speech_span(x.numpy(), sr, **trim)
                x = x[int(s * sr):int(e * sr)]
            f = fe(x)
            post = packed.model(f[None], torch.tensor([f.shape[0]])).float().softmax(-1)[0]
            fh.write(json.dumps({"key": Path(path).stem,
                                 "label": packed.labels[int(post.argmax())]}) + "\n")
            n += 1
    return {"files": n}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, args: argparse.Namespace, port: int) -> None:
    import torch
    import torch.distributed as dist
    import torch.nn.functional as F

    from sertk.data.ark import load_scp  # kaldiio's reader would unpickle PKL records
    from sertk.models.classifier import EmotionClassifier

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(args.threads)
    dist.init_process_group("gloo", rank=rank, world_size=args.nproc)
    labels = dict(line.split() for line in args.utt2emo.read_text().splitlines())
    classes = sorted(set(labels.values()))
    data = [(torch.tensor(m), classes.index(labels[k]))
            for k, m in load_scp(args.feats_scp).items()]
    torch.manual_seed(0)
    model = EmotionClassifier("light_sernet", data[0][0].shape[1], len(classes),
                              json.loads(args.conf))
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    seconds = 0.0
    for epoch in range(args.epochs):
        dist.barrier()
        t0 = time.perf_counter()
        order = torch.randperm(len(data), generator=torch.Generator().manual_seed(epoch))
        mine = order[rank::args.nproc].tolist()
        for b in range(0, len(mine), args.batch):
            items = [data[i] for i in mine[b:b + args.batch]]
            x = torch.nn.utils.rnn.pad_sequence([f for f, _ in items], batch_first=True)
            lengths = torch.tensor([f.shape[0] for f, _ in items])
            loss = F.cross_entropy(ddp(x, lengths), torch.tensor([y for _, y in items]))
            opt.zero_grad()
            loss.backward()
            opt.step()
        dist.barrier()
        seconds = time.perf_counter() - t0  # the last epoch's
    if rank == 0:
        args.out.write_text(json.dumps({"samples_per_s": len(data) / seconds,
                                        "seconds": seconds}))
    dist.destroy_process_group()


def ddp(args: argparse.Namespace) -> dict:
    import kaldiio  # noqa: F401 - imported once here, inherited by the forked workers
    import torch.multiprocessing as mp

    import sertk.models.classifier  # noqa: F401

    if args.nproc == 1:
        _ddp_worker(0, args, _free_port())
    else:  # fork: the workers need not import torch again (nothing has run threads yet)
        mp.start_processes(_ddp_worker, args=(args, _free_port()), nprocs=args.nproc,
                           start_method="fork")
    return json.loads(args.out.read_text())


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m sertk.bench.plain")
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("feats")
    f.add_argument("name")
    f.add_argument("wav_scp", type=Path)
    f.add_argument("out_dir", type=Path)
    i = sub.add_parser("infer")
    i.add_argument("model")
    i.add_argument("wav_list", type=Path)
    i.add_argument("out", type=Path)
    d = sub.add_parser("ddp")
    d.add_argument("feats_scp", type=Path)
    d.add_argument("utt2emo", type=Path)
    d.add_argument("out", type=Path)
    d.add_argument("--nproc", type=int, default=1)
    d.add_argument("--threads", type=int, default=1)
    d.add_argument("--epochs", type=int, default=2)
    d.add_argument("--batch", type=int, default=16)
    d.add_argument("--conf", default="{}", help="light_sernet conf as JSON")
    a = p.parse_args(argv)
    if a.cmd == "feats":
        res = feats(a.name, a.wav_scp, a.out_dir)
    elif a.cmd == "infer":
        res = infer(a.model, a.wav_list, a.out)
    else:
        res = ddp(a)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
