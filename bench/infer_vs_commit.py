#!/usr/bin/env python3
"""`sertk infer` of this checkout against the same command at an earlier commit, side by side.

Clones the repository at ``--commit`` into a temporary directory and runs the two versions'
``sertk infer --wav-list LIST --model MODEL`` alternately (``--rounds`` pairs) with the same
Python (this venv), each as a child process: wall time (start-up and model loading
included), CPU time (user + system) and peak RSS from ``wait4``. Prints a markdown table with
the ratios (old / new: above 1, the new version is faster or smaller) and checks that both
gave the same label for every file (posteriors: the largest difference).

    tools/venv/bin/python bench/infer_vs_commit.py --commit 6a59310 --wav-list LIST \\
        [--model sertk/pretrained/ravdess_cnn_asp_ref.zip] [--rounds 2] [--out report.md]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sertk.bench.common import cpu_model  # noqa: E402


def tree_pss(pid: int) -> int:
    """Proportional set size (bytes) of ``pid`` and its descendants: memory shared between
    them (libraries, copy-on-write pages after a fork) counted once in all."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
            kids = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:  # ended meanwhile
            continue
        todo += map(int, kids)
    return total


def run(checkout: Path, args: list[str], log: Path, sample: bool) -> dict[str, float]:
    """One child ``python -m sertk.cli.main infer ...`` with ``checkout`` first on the path:
    wall and CPU seconds (its forked processes included), the peak RSS of its largest
    process and, with ``sample``, the peak PSS of all its processes together (read from
    /proc every 50 ms: that costs CPU, so timed runs do not sample)."""
    env = dict(os.environ, PYTHONPATH=str(checkout))
    cmd = [sys.executable, "-m", "sertk.cli.main", "infer", *args]
    t = time.perf_counter()
    peak = 0
    with open(log, "wb") as err:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err,
                                cwd=tempfile.gettempdir())
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if sample:
                peak = max(peak, tree_pss(proc.pid))
            time.sleep(0.05)
    wall = time.perf_counter() - t
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"failed ({log}): {' '.join(cmd)}")
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime,
            "rss": usage.ru_maxrss / 1024 ** 2, "pss": peak / 1024 ** 3}


def records(path: Path) -> dict[str, dict]:
    return {r["key"]: r for r in map(json.loads, path.read_text().splitlines())}


def compare(old: Path, new: Path) -> str:
    a, b = records(old), records(new)
    if set(a) != set(b):
        return f"different keys ({len(a)} vs {len(b)})"
    same = sum(a[k]["label"] == b[k]["label"] for k in a)
    diff = max(abs(p - q) for k in a for p, q in zip(a[k]["posteriors"].values(),
                                                      b[k]["posteriors"].values()))
    return f"same label for {same}/{len(a)} files; posteriors differ by at most {diff:.1e}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--commit", required=True)
    ap.add_argument("--wav-list", required=True, type=Path)
    ap.add_argument("--model", default=str(REPO / "sertk/pretrained/ravdess_cnn_asp_ref.zip"))
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sertk_infer_vs_"))
    old_src = work / "old"
    subprocess.run(["git", "clone", "-q", str(REPO), str(old_src)], check=True)
    subprocess.run(["git", "-C", str(old_src), "checkout", "-q", a.commit], check=True)
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True, check=True).stdout.strip()
    if subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                      capture_output=True, text=True, check=True).stdout.strip():
        head += " + uncommitted changes"
    n = sum(1 for line in a.wav_list.read_text().splitlines() if line.strip())
    rows: dict[str, list[dict[str, float]]] = {"old": [], "new": []}
    load = [os.getloadavg()[0]]
    for r in range(a.rounds + 1):  # the last round only samples memory
        for who, src in (("old", old_src), ("new", REPO)):
            out = work / f"{who}.jsonl"
            args = ["--model", a.model, "--wav-list", str(a.wav_list), "--out", str(out),
                    "--no-progress"]
            rows[who].append(run(src, args, work / f"{who}{r}.log", sample=r == a.rounds))
            print(f"round {r + 1} {who}: " + ", ".join(f"{k} {v:.2f}"
                                                     for k, v in rows[who][-1].items()),
                  file=sys.stderr)
    load.append(os.getloadavg()[0])
    lines = [f"`sertk infer` on {n} files ({a.wav_list}), model {Path(a.model).name}: "
             f"commit {a.commit} (old) vs {head} (new), {a.rounds} alternating rounds; "
             f"{os.cpu_count()} cores, {cpu_model()}, "
             f"1-min load {load[0]:.2f} before, {load[1]:.2f} after.", "",
             "| round | old wall s | new wall s | old / new | old CPU s | new CPU s | "
             "old peak RSS GB | new peak RSS GB | old / new (RSS) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r, (o, w) in enumerate(zip(rows["old"][:-1], rows["new"][:-1]), 1):
        lines.append(f"| {r} | {o['wall']:.1f} | {w['wall']:.1f} | {o['wall'] / w['wall']:.2f}x "
                     f"| {o['cpu']:.1f} | {w['cpu']:.1f} | {o['rss']:.2f} | {w['rss']:.2f} | "
                     f"{o['rss'] / w['rss']:.2f}x |")
    o, w = rows["old"][-1], rows["new"][-1]
    lines += ["", f"Memory round (PSS read from /proc every 50 ms, so not timed): peak PSS of all "
              f"processes of the run together (shared pages counted once, forked ones "
              f"included) old {o['pss']:.2f} GB, new {w['pss']:.2f} GB ({o['pss'] / w['pss']:.2f}x"
              f"); peak RSS of the largest process old {o['rss']:.2f} GB, new {w['rss']:.2f} GB."]
    lines += ["", compare(work / "old.jsonl", work / "new.jsonl") + "."]
    report = "\n".join(lines)
    print(report)
    if a.out:
        a.out.write_text(report + "\n")


if __name__ == "__main__":
    main()
