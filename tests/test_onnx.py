"""ONNX export (``sertk export --format onnx``) and the onnxruntime backend of ``sertk infer``.

Every conf/model/*.yaml is built (random weights, eval mode, reduced sizes below) and either
exports with posteriors equal to PyTorch's (1e-4) at two time lengths other than the traced
one, or is refused with a reason that docs/onnx.md lists -- and then exporting it anyway must
fail, so the list holds no model that exports. End to end: a trained, packed model's
``sertk infer`` outputs on wav files are the same with the onnxruntime backend.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from safetensors.torch import save_file

from sertk.errors import SertkError
from sertk.export import onnx as onnx_export
from sertk.export.onnx import (
    TIME_MULTIPLE,
    export_network,
    export_packed_bytes,
    max_difference,
    unsupported_reason,
)
from sertk.export.onnx_runtime import OnnxRuntimeClassifier, load_backend, make_session
from sertk.features.registry import FeatureConfig, build_frontend
from sertk.models.classifier import EmotionClassifier, aux_tables, input_tables
from sertk.models.registry import MODELS
from tests.conftest import REPO, run_sertk

CONFIGS = sorted(p.stem for p in (REPO / "conf" / "model").glob("*.yaml"))
DOC = REPO / "docs" / "onnx.md"
LABELS = ["angry", "happy", "neutral", "sad"]

# reduced sizes (same structure: poolings, strides and layer kinds as the config)
SMALL: dict[str, dict] = {
    "ar_gru": {"hidden": 8, "att_dim": 4, "fc_dim": 8},
    "area_attention": {"branch_channels": 4, "channels": [8, 8, 8, 8], "att_dim": 8},
    "att_lstm": {"hidden": 8, "gate_att_dim": 4},
    "attpool_cnn": {"branch_channels": 4, "channels": [8, 8, 8, 8]},
    "ca_mser": {"n_mfcc": 13, "n_mels": 20, "lstm_hidden": 8, "image_size": [64, 64],
                "cnn_channels": [4, 4, 4, 4, 4], "embed_dim": 8, "w2e_dim": 8, "hidden": [8],
                "encoder_config": {"hidden_size": 16, "num_hidden_layers": 1,
                                   "num_attention_heads": 2, "intermediate_size": 16,
                                   "conv_dim": [8, 8], "conv_kernel": [10, 4],
                                   "conv_stride": [5, 4], "num_conv_pos_embeddings": 4,
                                   "num_conv_pos_embedding_groups": 2, "layerdrop": 0.0}},
    "cnn14_transfer": {"channels": [4, 4, 8, 8, 16, 16], "fc_dim": 16},
    "cnn_asp": {"channels": [8, 8, 16, 16], "embed_dim": 16},
    "cnn_asp_ref": {"channels": [8, 8, 16, 16]},
    "cnn_asp_small": {"channels": [8, 8, 16, 16], "embed_dim": 16},
    "cnn_attn_baseline": {"channels": [4, 8, 8], "lstm_hidden": 16, "att_dim": 16,
                          "fc_dims": [16, 16]},
    "compact_gcn": {"hidden_dim": 8, "mlp_hidden": 8, "filter_hidden": 4},
    "copypaste_resnet": {"channels": [4, 8, 8, 16], "blocks": [1, 1, 1, 1], "embed_dim": 16},
    "cpc": {"cpc": {"channels": 16, "hidden": 16, "strides": [5, 4, 4, 2],
                    "kernels": [10, 8, 8, 4]}, "att_dim": 16, "fc_dim": 16},
    "cpc_fbank": {"att_dim": 16, "fc_dim": 16},
    "daae": {"ae_channels": [4, 8, 8], "cnn_channels": [4, 8, 8], "head_hidden": 16,
             "fusion_dim": 16, "att_head_dim": 4, "lstm_hidden": 8},
    "daae_pretrain": {"ae_channels": [4, 8, 8], "cnn_channels": [4, 8, 8], "head_hidden": 16,
                      "fusion_dim": 16, "att_head_dim": 4, "lstm_hidden": 8},
    "hnsd": {"hidden": 16, "fusion_dim": 16, "fc_dim": 16},
    "leaf_mmt": {"channels": [4, 4, 8, 8], "embed_dim": 8},
    "light_sernet": {"path_channels": 4, "lflb_channels": [8, 8, 8, 8], "final_channels": 16},
    "listener_adaptive": {"channels": [4, 8, 8], "lstm_hidden": 16, "att_dim": 16,
                          "fc_dims": [16, 16]},
    "maec": {"conv_channels": [16, 16, 8], "bottleneck": 16, "gru_hidden": 16,
             "disc_hidden": 16},
    "meta_ser": {"hidden": 16, "fc_dim": 16},
    "mscnn_spu": {"channels": 16},
    "mtl_msf": {"hidden": [16, 16, 8]},
    "mtl_w2v2_ctc": {"encoder_config": {"hidden_size": 16, "num_hidden_layers": 1,
                                        "num_attention_heads": 2, "intermediate_size": 16,
                                        "conv_dim": [8, 8, 8], "conv_kernel": [10, 4, 4],
                                        "conv_stride": [5, 4, 4], "num_conv_pos_embeddings": 4,
                                        "num_conv_pos_embedding_groups": 2, "layerdrop": 0.0},
                     "tokenizer": None},
    "nonverbal_seg": {"channels": [4, 4, 4], "embed_dim": 8, "enc_hidden": 8, "dec_hidden": 8,
                      "att_dim": 8},
    "replk_ser": {"blocks": [1, 1, 1, 1], "channels": [4, 8, 8, 16]},
    "semantic_fusion": {"semantic_dim": 8, "channels": [8, 8, 8], "fusion_dim": 16,
                        "lstm_hidden": 16},
    "stl_transformer": {"channels": [4, 4, 8, 8, 8, 8], "ffn_dim": 16},
}


@cache
def _feature_dim(feats: str) -> int:
    cfg = FeatureConfig.load(REPO / feats)
    return int(build_frontend(cfg)(torch.zeros(int(0.3 * cfg.sample_rate)) + 1e-3).shape[1])


@cache
def _setup(config: str) -> tuple[str, dict, int, bool]:
    """Model name, reduced conf, input dimension and whether it is categorical."""
    cfg = yaml.safe_load((REPO / "conf" / "model" / f"{config}.yaml").read_text())
    name = cfg["model"]["name"]
    conf = {**(cfg["model"].get("conf") or {}), **SMALL.get(config, {})}
    dim = _feature_dim(cfg["feats"])
    extra = getattr(MODELS.get(name).builder, "extra_input_dim_for", None)
    if extra is not None:
        dim += extra(conf)
    return name, conf, dim, cfg.get("task") != "dimensional"


@cache
def _model(config: str) -> EmotionClassifier:
    name, conf, dim, _ = _setup(config)
    torch.manual_seed(0)
    aux = {t: 3 for t in aux_tables(name, conf)} or None
    model = EmotionClassifier(name, dim, len(LABELS), conf, aux_classes=aux)
    # CMVN statistics away from (0, 1), as a trained model has
    model.cmvn.mean.uniform_(-2.0, 2.0)
    model.cmvn.std.uniform_(0.5, 3.0)
    return model.eval()


def documented_unsupported() -> dict[str, str]:
    """``{config: reason}`` of the table under "Models that do not export" in docs/onnx.md."""
    text = DOC.read_text()
    section = text.split("## Models that do not export", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([\w.-]+)` \| `([\w.-]+)` \| (.+) \|$", section, flags=re.M)
    return {config: reason for config, _, reason in rows}


def test_documented_list_names_existing_configs():
    documented = documented_unsupported()
    assert documented, "docs/onnx.md lists no unsupported model (table format changed?)"
    assert set(documented) <= set(CONFIGS), set(documented) - set(CONFIGS)


@pytest.mark.parametrize("config", CONFIGS)
def test_config_exports_with_parity_or_is_documented_unsupported(config, monkeypatch):
    name, conf, dim, categorical = _setup(config)
    reason = unsupported_reason(name, conf)
    documented = documented_unsupported()
    if reason is None:
        assert config not in documented, f"{config} exports: remove it from docs/onnx.md"
        model = _model(config)
        # the zoo table's time multiple (1: no padding) works as is, without fallbacks
        data, info = export_network(model, categorical=categorical, check=False)
        assert info["time_multiple"] == TIME_MULTIPLE.get(name, 1), info
        session = make_session(data)
        for lengths in ([331, 250], [97, 80]):  # two time lengths, neither the traced one
            diff = max_difference(model, session, lengths, categorical, seed=5)
            assert diff <= 1e-4, f"{config}: |onnxruntime - torch| = {diff:.2e} at {lengths}"
        return
    assert config in documented, f"{config} does not export ({reason}): list it in docs/onnx.md"
    packed = SimpleNamespace(config={"model": {"name": name, "conf": conf}}, model=None,
                             labels=LABELS)
    with pytest.raises(SertkError, match=f"model {name} cannot be exported to ONNX"):
        export_packed_bytes(packed)
    if input_tables(name, conf):
        return  # out of scope by construction: the graph has no input for the transcript
    # the reason holds: exported anyway (from a short example, to keep unrolled loops small),
    # the graph fails to export, to run, or to agree at other lengths (one long enough for
    # several LEAF chunks / nonverbal_seg segments)
    monkeypatch.setattr(onnx_export, "EXAMPLE_FRAMES", 16)
    assert not _exports_faithfully(_model(config), categorical), \
        f"{config} exports after all: drop its rule in unsupported_reason and docs/onnx.md"


def _exports_faithfully(model, categorical: bool) -> bool:
    try:
        data, _ = export_network(model, time_multiple=1, categorical=categorical, check=False)
        session = make_session(data)
        return all(max_difference(model, session, lengths, categorical, seed=5) <= 1e-4
                   for lengths in ([54, 30], [29], [700, 350]))
    except Exception:  # noqa: BLE001  (exporter, ONNX Runtime or shape errors alike)
        return False


# ----------------------------------------------------------------------------- end to end
def _write_wavs(root: Path) -> list[tuple[str, str]]:
    rng = np.random.default_rng(7)
    items = []
    for i, seconds in enumerate((0.7, 1.3, 2.9)):
        t = np.arange(int(16000 * seconds)) / 16000
        wav = 0.3 * np.sin(2 * np.pi * (150 + 60 * i) * t) + 0.02 * rng.standard_normal(len(t))
        path = root / f"utt{i}.wav"
        sf.write(path, wav.astype(np.float32), 16000)
        items.append((f"utt{i}", str(path)))
    return items


def _recognize(packed, items, **kw):
    from sertk.infer.recognizer import Recognizer

    return list(Recognizer(packed, batch_size=2, **kw).recognize(items, progress=False))


def _assert_same(torch_recs, ort_recs):
    assert [r["key"] for r in torch_recs] == [r["key"] for r in ort_recs]
    for a, b in zip(torch_recs, ort_recs):
        assert a["label"] == b["label"]
        for lab, p in a["posteriors"].items():
            assert b["posteriors"][lab] == pytest.approx(p, abs=1e-4)
        for sa, sb in zip(a.get("segments", []), b.get("segments", [])):
            for lab, p in sa["posteriors"].items():
                assert sb["posteriors"][lab] == pytest.approx(p, abs=1e-4)


def test_cli_export_and_onnxruntime_backend_match_torch(trained, tmp_path):
    from sertk.infer.packed import load_packed

    pack = tmp_path / "model.zip"
    run_sertk("pack", "--exp", trained, "--out", pack)
    out = run_sertk("export", "--model", pack, "--format", "onnx").stdout
    onnx_path, side = tmp_path / "model.onnx", tmp_path / "model.onnx.json"
    assert onnx_path.is_file() and side.is_file(), out
    assert "light_sernet, 4 classes, 40-dim fbank features" in out
    meta = json.loads(side.read_text())
    assert meta["format"] == "sertk-onnx" and meta["labels"] == LABELS
    assert meta["outputs"] == ["logits", "posteriors"] and meta["max_abs_diff"] <= 1e-4
    assert meta["time_multiple"] == TIME_MULTIPLE.get("light_sernet", 1)

    items = _write_wavs(tmp_path)
    ref = _recognize(load_packed(pack), items)
    ref_seg = _recognize(load_packed(pack), items, segment=0.5, shift=0.25)
    packed = load_backend(load_packed(pack), "onnxruntime", pack)  # the file written above
    assert isinstance(packed.model, OnnxRuntimeClassifier)
    _assert_same(ref, _recognize(packed, items))
    _assert_same(ref_seg, _recognize(packed, items, segment=0.5, shift=0.25))
    in_memory = load_backend(load_packed(pack), "onnxruntime")  # no file: exported now
    _assert_same(ref, _recognize(in_memory, items))
    # the command line: sertk infer --backend onnxruntime gives torch's posteriors
    (tmp_path / "wavs.txt").write_text("".join(f"{w}\n" for _, w in items))
    by_cli = {}
    for backend in ("torch", "onnxruntime"):
        run_sertk("infer", "--model", pack, "--wav-list", tmp_path / "wavs.txt", "--backend",
                  backend, "--out", tmp_path / f"{backend}.jsonl", "--no-progress")
        by_cli[backend] = [json.loads(line) for line in
                           (tmp_path / f"{backend}.jsonl").read_text().splitlines()]
    assert len(by_cli["torch"]) == len(items)
    _assert_same(by_cli["torch"], by_cli["onnxruntime"])

    # a graph exported from another pack is refused, not silently used
    meta["source"]["sha256"] = "0" * 64
    side.write_text(json.dumps(meta))
    with pytest.raises(SertkError, match="exported from another version"):
        load_backend(load_packed(pack), "onnxruntime", pack)
    with pytest.raises(SertkError, match="unknown backend"):
        load_backend(load_packed(pack), "tensorrt")


def test_cli_refuses_an_unsupported_model_with_its_reason(tmp_path):
    """A hand-made experiment directory of ar_gru (a Python loop over frames)."""
    from sertk.infer.packed import load_packed

    name, conf, dim, _ = _setup("ar_gru")
    exp = tmp_path / "exp"
    exp.mkdir()
    feats = yaml.safe_load((REPO / "conf" / "feats" / "emobase_lld.yaml").read_text())
    (exp / "feats.yaml").write_text(yaml.safe_dump(feats))
    (exp / "config.yaml").write_text(yaml.safe_dump(
        {"model": {"name": name, "conf": conf}, "input_dim": dim, "labels": LABELS}))
    (exp / "labels.txt").write_text("\n".join(LABELS) + "\n")
    save_file({k: v.contiguous() for k, v in _model("ar_gru").state_dict().items()},
              str(exp / "model.safetensors"))
    res = run_sertk("export", "--model", exp, check=False)
    assert res.returncode == 1
    assert res.stderr.startswith("sertk: error: model ar_gru cannot be exported to ONNX: its "
                                 "AR-GRU cells run a Python loop"), res.stderr
    assert not (exp / "model.onnx").exists()
    with pytest.raises(SertkError, match="cannot run on onnxruntime"):
        load_backend(load_packed(exp), "onnxruntime", exp)
