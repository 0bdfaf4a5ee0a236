"""Multistage late fusion of dimensional predictions with support vector regression
(Atmaja & Akagi, ICASSP 2020; papers.md section 23), run by ``bin/svr_fusion.py``.

Each *system* (a trained model, e.g. ``mtl_msf`` on one feature set or feature pair) gives
``utt2dim``-style predictions (``utt a v d``) on a development set and on the test set. With
the development reference ``utt2dim``:

* **Selection** (``top``): keep the ``top`` systems of highest mean development CCC (paper:
  the 11 best of its unimodal and bimodal runs; 0 keeps all).
* **Stage 1**: one SVR per dimension, fitted on the development predictions, predicts the
  test set. Its input (``inputs``) is each system's prediction of that dimension (``same``:
  the paper's "prediction vector of the selected runs") or every dimension of every system
  (``all``, as in the authors' code, bagustris/multistage-ser ``fuse_results_3.py``).
* **Stage s > 1**: the same SVR over the systems plus the previous stage's output, fed back as
  one more system ("the SVR output is fed into the same SVR again", up to 5 stages; the
  authors' code appends the fused predictions to the inputs of the next fusion).

Not in the paper (chosen here): the paper fits and reports on the development set. Here the
development predictions that feed the next stage, the written ``dev_hyp.txt`` and the
reported development CCC are *cross-fitted* (``folds``-fold over utterances, or over speakers
with ``groups``): each utterance is predicted by an SVR that did not see it, so a later stage
does not learn to trust an overfitted input; ``folds`` 0 fits and predicts in-sample as the
paper. The test predictions come from SVRs fitted on the whole development set. Inputs are
standardised with development statistics. Kernel and C are not in the paper: RBF and C = 1
(papers.md's suggestion), epsilon 0.1 and gamma ``scale`` (scikit-learn's defaults); 5 stages.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sertk.errors import SertkError
from sertk.scoring_dim import DIMS, ccc, read_dims

INPUTS = ("same", "all")
KERNELS = ("rbf", "linear", "poly", "sigmoid")


@dataclass(frozen=True)
class FusionConfig:
    """Options of the multistage SVR fusion (see the module docstring for the defaults)."""

    stages: int = 5
    top: int = 0
    inputs: str = "same"
    kernel: str = "rbf"
    C: float = 1.0
    epsilon: float = 0.1
    gamma: str | float = "scale"
    folds: int = 5
    seed: int = 0

    def check(self) -> None:
        if self.stages < 1:
            raise SertkError(f"stages must be at least 1, got {self.stages}")
        if self.top < 0:
            raise SertkError(f"top must be 0 (all systems) or positive, got {self.top}")
        if self.inputs not in INPUTS:
            raise SertkError(f"inputs must be {' or '.join(INPUTS)}, got {self.inputs!r}")
        if self.kernel not in KERNELS:
            raise SertkError(f"kernel must be one of {', '.join(KERNELS)}, got {self.kernel!r}")
        if self.C <= 0 or self.epsilon < 0:
            raise SertkError(f"need C > 0 and epsilon >= 0, got C {self.C}, "
                             f"epsilon {self.epsilon}")


@dataclass
class Stage:
    """One stage's fused predictions ``[N, K]`` (development: cross-fitted) and test
    predictions ``[M, K]``, with the development CCC per dimension."""

    dev: np.ndarray
    test: np.ndarray
    dev_ccc: list[float]


def aligned(table: Mapping[str, np.ndarray], keys: Sequence[str], path: str | Path,
            other: str | Path) -> np.ndarray:
    """``table``'s rows in the order of ``keys`` (``[N, K]``); the two must hold the same
    utterances, else an error names the first missing or extra one and both files."""
    missing = [k for k in keys if k not in table]
    if missing:
        raise SertkError(f"{path}: no prediction for utterance {missing[0]} of {other} "
                         f"({len(missing)} missing)")
    known = set(keys)
    extra = [k for k in table if k not in known]
    if extra:
        raise SertkError(f"{path}: utterance {extra[0]} is not in {other} "
                         f"({len(extra)} extra)")
    return np.stack([table[k] for k in keys])


def system_ccc(preds: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """CCC of each system and dimension ``[S, K]`` from predictions ``[N, S, K]``."""
    return np.array([[ccc(preds[:, s, d], ref[:, d]) for d in range(ref.shape[1])]
                     for s in range(preds.shape[1])])


def select_top(dev: np.ndarray, ref: np.ndarray, top: int) -> list[int]:
    """Indices of the ``top`` systems of highest mean development CCC (all when 0), in
    their input order."""
    if top == 0 or top >= dev.shape[1]:
        return list(range(dev.shape[1]))
    best = np.argsort(-system_ccc(dev, ref).mean(1), kind="stable")[:top]
    return sorted(int(i) for i in best)


def stage_features(preds: np.ndarray, dim: int, inputs: str) -> np.ndarray:
    """SVR inputs for dimension ``dim`` from ``[N, S, K]``: ``[N, S]`` (``same``) or
    ``[N, S * K]`` (``all``)."""
    return preds[:, :, dim] if inputs == "same" else preds.reshape(len(preds), -1)


def make_svr(cfg: FusionConfig) -> Any:
    """Standardisation + scikit-learn ``SVR``."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVR

    return make_pipeline(StandardScaler(), SVR(kernel=cfg.kernel, C=cfg.C,
                                               epsilon=cfg.epsilon, gamma=cfg.gamma))


def fold_splits(n: int, cfg: FusionConfig, groups: Sequence[str] | None
                ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Cross-fitting folds over ``n`` development utterances (by ``groups`` when given);
    none when ``cfg.folds`` is 0 or 1 (in-sample)."""
    from sklearn.model_selection import GroupKFold, KFold

    if cfg.folds <= 1:
        return []
    if groups is not None:
        if len(set(groups)) < cfg.folds:
            raise SertkError(f"{cfg.folds} folds need at least {cfg.folds} speakers, the "
                             f"development set has {len(set(groups))}")
        return list(GroupKFold(n_splits=cfg.folds).split(np.zeros(n), groups=groups))
    if n < 2 * cfg.folds:
        raise SertkError(f"{cfg.folds} folds need at least {2 * cfg.folds} development "
                         f"utterances, got {n}")
    return list(KFold(cfg.folds, shuffle=True, random_state=cfg.seed).split(np.zeros(n)))


def cross_fit(x_dev: np.ndarray, y_dev: np.ndarray, x_test: np.ndarray, cfg: FusionConfig,
              splits: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Development predictions (out-of-fold; in-sample without ``splits``) and test
    predictions of an SVR fitted on the whole development set."""
    full = make_svr(cfg).fit(x_dev, y_dev)
    if not splits:
        return full.predict(x_dev), full.predict(x_test)
    dev_hat = np.empty(len(y_dev))
    for train, held in splits:
        dev_hat[held] = make_svr(cfg).fit(x_dev[train], y_dev[train]).predict(x_dev[held])
    return dev_hat, full.predict(x_test)


def fuse(dev: np.ndarray, ref: np.ndarray, test: np.ndarray, cfg: FusionConfig,
         groups: Sequence[str] | None = None) -> list[Stage]:
    """Multistage fusion of development ``[N, S, K]`` and test ``[M, S, K]`` predictions of
    ``S`` systems against the development reference ``[N, K]``; one :class:`Stage` per
    stage (the last is the result)."""
    cfg.check()
    splits = fold_splits(len(ref), cfg, groups)
    stages: list[Stage] = []
    dev_in, test_in = dev, test
    for _ in range(cfg.stages):
        cols = [cross_fit(stage_features(dev_in, d, cfg.inputs), ref[:, d],
                          stage_features(test_in, d, cfg.inputs), cfg, splits)
                for d in range(ref.shape[1])]
        dev_hat = np.stack([c[0] for c in cols], 1)
        test_hat = np.stack([c[1] for c in cols], 1)
        stages.append(Stage(dev_hat, test_hat,
                            [ccc(dev_hat[:, d], ref[:, d]) for d in range(ref.shape[1])]))
        dev_in = np.concatenate([dev, dev_hat[:, None]], axis=1)
        test_in = np.concatenate([test, test_hat[:, None]], axis=1)
    return stages


def load_inputs(ref_path: str | Path, systems: Sequence[tuple[str | Path, str | Path]]
                ) -> tuple[list[str], np.ndarray, np.ndarray, list[str], np.ndarray]:
    """Development keys, reference ``[N, K]`` and predictions ``[N, S, K]``; test keys (the
    first test file's order) and predictions ``[M, S, K]``."""
    if not systems:
        raise SertkError("give at least one system (development and test predictions)")
    ref_table = read_dims(ref_path)
    if len(ref_table) < 2:
        raise SertkError(f"{ref_path}: fusion needs at least 2 development utterances")
    dev_keys = list(ref_table)
    test_tables = [read_dims(t) for _, t in systems]
    test_keys = list(test_tables[0])
    dev = np.stack([aligned(read_dims(d), dev_keys, d, ref_path) for d, _ in systems], 1)
    test = np.stack([aligned(t, test_keys, p, systems[0][1])
                     for t, (_, p) in zip(test_tables, systems)], 1)
    ref = np.stack([ref_table[k] for k in dev_keys])
    return dev_keys, ref, dev, test_keys, test


def read_groups(path: str | Path, keys: Sequence[str]) -> list[str]:
    """The speaker of each development utterance from an ``utt2spk``."""
    from sertk.data.kaldi_table import read_table

    table = read_table(path, 2, 2)
    missing = [k for k in keys if k not in table]
    if missing:
        raise SertkError(f"{path}: no speaker for development utterance {missing[0]} "
                         f"({len(missing)} missing)")
    return [table[k] for k in keys]


def write_dims(path: Path, keys: Sequence[str], values: np.ndarray) -> None:
    """An ``utt2dim``-style table ``utt a v d`` (for ``sertk score --dim --hyp``)."""
    with open(path, "w") as fh:
        for key, row in zip(keys, values):
            fh.write(key + " " + " ".join(f"{v:.6f}" for v in row) + "\n")


def run(ref_path: str | Path, systems: Sequence[tuple[str | Path, str | Path]],
        out_dir: str | Path, cfg: FusionConfig, groups_path: str | Path | None = None
        ) -> dict[str, Any]:
    """Fuse, then write ``out_dir``/``hyp.txt`` (test), ``dev_hyp.txt`` (development,
    cross-fitted) and ``fusion.json`` (options, systems with their development CCC and
    whether selected, development CCC per stage); return the ``fusion.json`` content."""
    cfg.check()
    dev_keys, ref, dev, test_keys, test = load_inputs(ref_path, systems)
    groups = read_groups(groups_path, dev_keys) if groups_path else None
    keep = select_top(dev, ref, cfg.top)
    stages = fuse(dev[:, keep], ref, test[:, keep], cfg, groups)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_dims(out / "hyp.txt", test_keys, stages[-1].test)
    write_dims(out / "dev_hyp.txt", dev_keys, stages[-1].dev)
    sys_ccc = system_ccc(dev, ref)
    summary = {
        "config": asdict(cfg), "dims": list(DIMS), "dev_ref": str(ref_path),
        "cross_fitted": cfg.folds > 1, "num_dev_utts": len(dev_keys),
        "num_test_utts": len(test_keys),
        "systems": [{"dev": str(d), "test": str(t), "dev_CCC": sys_ccc[i].tolist(),
                     "selected": i in keep} for i, (d, t) in enumerate(systems)],
        "stages": [{"stage": i + 1, "dev_CCC": s.dev_ccc} for i, s in enumerate(stages)]}
    (out / "fusion.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
