#!/usr/bin/env python3
"""Average the posteriors of several systems on the same test set (a late-fusion ensemble).

    average_posteriors.py OUT_DIR IN.jsonl [IN.jsonl ...]

Each input is a ``sertk predict`` posteriors.jsonl (``{"key", "label", "posteriors"}`` per
line). All must hold the same utterances and classes. Writes OUT_DIR/posteriors.jsonl (the
mean posteriors) and OUT_DIR/hyp.txt (``utt label``, the arg-max), for ``sertk score``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def read(path: Path) -> dict[str, dict[str, float]]:
    if not path.is_file():
        sys.exit(f"average_posteriors.py: error: {path} not found")
    out = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        rec = json.loads(line)
        if rec["key"] in out:
            sys.exit(f"average_posteriors.py: error: {path}:{n}: duplicate key {rec['key']}")
        out[rec["key"]] = rec["posteriors"]
    return out


def main(out_dir: str, inputs: list[str]) -> None:
    systems = [read(Path(p)) for p in inputs]
    keys, classes = sorted(systems[0]), sorted(next(iter(systems[0].values())))
    for path, sys_ in zip(inputs[1:], systems[1:]):
        if sorted(sys_) != keys or sorted(next(iter(sys_.values()))) != classes:
            sys.exit(f"average_posteriors.py: error: {path}: other utterances or classes than "
                     f"{inputs[0]}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "posteriors.jsonl", "w") as post, open(out / "hyp.txt", "w") as hyp:
        for key in keys:
            mean = {c: sum(s[key][c] for s in systems) / len(systems) for c in classes}
            best = max(classes, key=lambda c: mean[c])
            post.write(json.dumps({"key": key, "label": best,
                                   "posteriors": {c: round(v, 6) for c, v in mean.items()}})
                       + "\n")
            hyp.write(f"{key} {best}\n")
    print(f"{out}: mean of {len(systems)} systems over {len(keys)} utterances")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2:])
