"""``sertk infer --nj N``: one recognizer in N forked processes, records in input order.

Threads share one interpreter: the Python between torch calls (and the GIL hand-overs) costs
about a third more CPU than the same work in one thread. Processes forked after the model is
loaded share its weights and the imported libraries (copy-on-write), start in milliseconds,
and each runs the whole pipeline (read, resample, trim, front end, model) on every N-th input
in one thread. The parent merges their records round-robin, so the output order is the
input order and nothing waits for more than a bounded queue of records per child.

Only on a CPU with the torch backend (a CUDA context and onnxruntime's thread pools do not
survive a fork) and for models that need no statistics over all inputs (per-speaker CMVN):
:func:`can_shard` says so, and the caller falls back to threads otherwise.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
from collections.abc import Iterator
from typing import Any

import torch
from tqdm import tqdm

from sertk.errors import SertkError

_QUEUE = 64  # records a child may run ahead of the merge


def can_shard(rec: Any) -> bool:
    """Whether ``rec`` (a :class:`sertk.infer.recognizer.Recognizer`) can run in forked
    processes: CPU, the torch backend, no per-speaker statistics, and a platform with fork."""
    from sertk.export.onnx_runtime import OnnxRuntimeClassifier

    return (rec.on_cpu and not isinstance(rec.packed.model, OnnxRuntimeClassifier)
            and not rec.packed.feats.speaker_cmvn
            and "fork" in mp.get_all_start_methods())


def _child(rec: Any, items: list[tuple[str, str]], out: mp.Queue, skip_bad: bool) -> None:
    torch.set_num_threads(1)
    rec.num_workers = 0
    try:
        for r in rec.recognize(items, skip_bad=skip_bad, progress=False):
            out.put(("rec", r))
    except BaseException as exc:  # noqa: BLE001  (re-raised in the parent, at its input)
        try:
            out.put(("error", exc))
        except Exception:  # noqa: BLE001  (an exception that does not pickle)
            out.put(("error", SertkError(f"{type(exc).__name__}: {exc}")))
    out.close()
    out.join_thread()


def recognize_sharded(rec: Any, items: list[tuple[str, str]], jobs: int,
                      skip_bad: bool = False, progress: bool = True
                      ) -> Iterator[dict[str, Any]]:
    """The records of ``rec.recognize(items)``, computed by ``jobs`` forked processes (input
    ``i`` by process ``i % jobs``), in input order. A child's error is raised when its input
    comes; a child that dies (killed, out of memory) is one error line."""
    jobs = max(1, min(jobs, len(items)))
    ctx = mp.get_context("fork")
    queues = [ctx.Queue(_QUEUE) for _ in range(jobs)]
    procs = [ctx.Process(target=_child, args=(rec, items[j::jobs], queues[j], skip_bad),
                         daemon=True, name=f"sertk-infer-{j}") for j in range(jobs)]
    for p in procs:
        p.start()
    bar = tqdm(total=len(items), desc="infer", unit="file", disable=not progress)
    try:
        for i in range(len(items)):
            kind, payload = _next(queues[i % jobs], procs[i % jobs])
            if kind == "error":
                raise payload
            bar.update(1)
            yield payload
    finally:
        bar.close()
        for p in procs:
            if p.is_alive():
                p.terminate()
            p.join()


def _next(q: mp.Queue, proc: mp.Process) -> tuple[str, Any]:
    """The next message of a child; an error if the child is gone without sending it."""
    while True:
        try:
            return q.get(timeout=1.0)
        except queue.Empty:
            if not proc.is_alive():
                try:
                    return q.get(timeout=1.0)
                except queue.Empty:
                    raise SertkError(f"inference process {proc.name} ended (exit code "
                                     f"{proc.exitcode}) before giving all its records"
                                     ) from None
