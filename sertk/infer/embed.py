"""Utterance embeddings of a trained model (``sertk embed``): the cached outputs of a stage
that the next stage of a staged model reads (``leaf_mmt``, papers.md section 25: "train ->
freeze -> cache utterance embeddings -> train the next stage")."""

from __future__ import annotations

from pathlib import Path

import kaldiio
import torch
from tqdm import tqdm

from sertk.data.dataset import FeatsDataset, pad_collate
from sertk.data.inputs import batch_inputs
from sertk.data.sampler import BucketBatchSampler
from sertk.errors import SertkError
from sertk.infer.packed import PackedModel
from sertk.infer.recognizer import model_inputs


def write_embeddings(packed: PackedModel, data_dir: str | Path, out_dir: str | Path,
                     device: str = "cpu", batch_size: int = 32, progress: bool = True) -> int:
    """``OUT/embeddings.{ark,scp}``: the network's ``embed`` output (one vector per
    utterance) for every utterance of a dump directory; returns their number."""
    net = packed.model.net
    if not hasattr(net, "embed"):
        raise SertkError(f"model {packed.model.name} has no utterance embedding (embed)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ds = FeatsDataset(data_dir, None, require_labels=False)
    tables = model_inputs(packed, data_dir, ds.keys)
    loader = torch.utils.data.DataLoader(
        ds, batch_sampler=BucketBatchSampler(ds.lengths, batch_size, shuffle=False),
        collate_fn=pad_collate)
    packed.model.to(device).eval()
    vectors: dict[str, torch.Tensor] = {}
    for batch in tqdm(loader, desc="embed", disable=not progress, unit="batch"):
        with torch.no_grad():
            x = packed.model.cmvn(batch["feats"].to(device))
            emb = net.embed(x, batch["lengths"].to(device),
                            inputs=batch_inputs(tables, batch["keys"], device))
        vectors.update(zip(batch["keys"], emb.float().cpu()))
    with kaldiio.WriteHelper(f"ark,scp:{out / 'embeddings.ark'},{out / 'embeddings.scp'}") as w:
        for key in sorted(vectors):
            w(key, vectors[key].numpy()[None, :])
    return len(vectors)
