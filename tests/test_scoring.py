"""Scoring numbers against scikit-learn, and fold aggregation."""

import json

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    recall_score,
)

from sertk.errors import DataError
from sertk.scoring import aggregate, metrics_from_confusion, score

LABELS = ["angry", "happy", "neutral", "sad", "calm"]


@pytest.mark.parametrize("seed", range(5))
def test_metrics_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    n = 200
    # class 4 ("calm") never in the reference; sometimes predicted
    ref = rng.integers(0, 4, n)
    hyp = np.where(rng.random(n) < 0.6, ref, rng.integers(0, 5, n))
    refs = {f"u{i:03d}": LABELS[r] for i, r in enumerate(ref)}
    hyps = {f"u{i:03d}": LABELS[h] for i, h in enumerate(hyp)}
    res = score(refs, hyps, LABELS)
    order = np.argsort([f"u{i:03d}" for i in range(n)])
    r, h = ref[order], hyp[order]
    assert res["WA"] == pytest.approx(accuracy_score(r, h))
    assert res["UA"] == pytest.approx(balanced_accuracy_score(r, h))
    assert res["macro_F1"] == pytest.approx(f1_score(r, h, average="macro", zero_division=0))
    recalls = recall_score(r, h, labels=[0, 1, 2, 3], average=None)
    for k, lab in enumerate(LABELS[:4]):
        assert res["recall"][lab] == pytest.approx(recalls[k])
    assert "calm" not in res["recall"]
    np.testing.assert_array_equal(res["confusion"], confusion_matrix(r, h, labels=range(5)))


def test_missing_hypothesis_is_an_error():
    with pytest.raises(DataError, match="no hypothesis"):
        score({"a": "sad", "b": "sad"}, {"a": "sad"}, ["sad"])
    with pytest.raises(DataError, match="unknown label 'joy'"):
        score({"a": "sad"}, {"a": "joy"}, ["sad"])


def test_aggregate_mean_std_and_pooled():
    labels = ["a", "b"]
    f1 = metrics_from_confusion(np.array([[8, 2], [1, 9]]), labels)
    f2 = metrics_from_confusion(np.array([[5, 5], [0, 10]]), labels)
    agg = aggregate([f1, f2])
    uas = [f1["UA"], f2["UA"]]
    assert agg["UA"]["mean"] == pytest.approx(np.mean(uas))
    assert agg["UA"]["std"] == pytest.approx(np.std(uas))
    assert agg["pooled"]["confusion"] == [[13, 7], [1, 19]]
    assert agg["pooled"]["WA"] == pytest.approx(32 / 40)


def test_score_cli_writes_results_and_png(tmp_path):
    from tests.conftest import run_sertk

    (tmp_path / "ref").write_text("u1 sad\nu2 happy\nu3 happy\n")
    (tmp_path / "hyp.jsonl").write_text(
        "".join(json.dumps({"key": k, "label": v}) + "\n"
                for k, v in [("u1", "sad"), ("u2", "sad"), ("u3", "happy")]))
    out = run_sertk("score", "--ref", tmp_path / "ref", "--hyp", tmp_path / "hyp.jsonl",
                    "--out-dir", tmp_path / "res")
    assert "UA 75.00" in out.stdout and "WA 66.67" in out.stdout
    for name in ("results.json", "confusion.txt", "confusion.png"):
        assert (tmp_path / "res" / name).stat().st_size > 0
    assert (tmp_path / "res" / "confusion.png").read_bytes()[:4] == b"\x89PNG"
    agg = run_sertk("score", "--fold", tmp_path / "res" / "results.json", "--fold",
                    tmp_path / "res" / "results.json", "--out-dir", tmp_path / "agg",
                    "--markdown", tmp_path / "agg" / "RESULTS.md", "--command", "./run.sh")
    assert "2 folds: UA 75.00 ± 0.00" in agg.stdout
    assert "| **mean ± std** | **75.00 ± 0.00**" in (tmp_path / "agg" / "RESULTS.md").read_text()


def test_score_subset_counts_the_labels_a_smaller_model_lacks(tmp_path):
    from tests.conftest import run_sertk

    (tmp_path / "ref").write_text("u1 sad\nu2 happy\nu3 calm\nu4 calm\nu5 fearful\n")
    (tmp_path / "hyp").write_text("u1 sad\nu2 sad\nu3 sad\nu4 happy\nu5 happy\n")
    (tmp_path / "labels").write_text("happy\nsad\n")
    args = ["score", "--ref", tmp_path / "ref", "--hyp", tmp_path / "hyp", "--labels",
            tmp_path / "labels", "--out-dir", tmp_path / "res"]
    bad = run_sertk(*args, check=False)
    assert bad.returncode != 0 and "unknown label 'calm'" in bad.stderr
    out = run_sertk(*args, "--subset").stdout
    assert "UA 50.00" in out
    assert "(3 utterances of other labels not scored: calm 2, fearful 1)" in out
    assert json.loads((tmp_path / "res" / "results.json").read_text())["not_scored"] == 3


def test_average_posteriors_late_fusion(tmp_path):
    """bin/average_posteriors.py: the mean of systems' posteriors, its arg-max, clear errors."""
    import json
    import subprocess
    import sys

    from tests.conftest import REPO

    def write(name, rows):
        path = tmp_path / name
        path.write_text("".join(json.dumps({"key": k, "label": max(p, key=p.get),
                                            "posteriors": p}) + "\n" for k, p in rows.items()))
        return path

    a = write("a.jsonl", {"u1": {"sad": 0.6, "happy": 0.4}, "u2": {"sad": 0.2, "happy": 0.8}})
    b = write("b.jsonl", {"u1": {"sad": 0.1, "happy": 0.9}, "u2": {"sad": 0.3, "happy": 0.7}})
    tool = str(REPO / "bin" / "average_posteriors.py")
    subprocess.run([sys.executable, tool, tmp_path / "out", a, b], check=True,
                   capture_output=True)
    assert (tmp_path / "out" / "hyp.txt").read_text() == "u1 happy\nu2 happy\n"
    post = [json.loads(x) for x in
            (tmp_path / "out" / "posteriors.jsonl").read_text().splitlines()]
    assert post[0]["posteriors"] == {"happy": 0.65, "sad": 0.35}
    c = write("c.jsonl", {"u1": {"sad": 0.5, "happy": 0.5}})
    proc = subprocess.run([sys.executable, tool, tmp_path / "o2", a, c], capture_output=True,
                          text=True)
    assert proc.returncode == 1 and "other utterances or classes" in proc.stderr
