"""One run per experiment directory: ``EXP/.lock``.

``sertk train`` (and ``sertk train-meta``, ``sertk pretrain``) hold an exclusive ``flock`` on
``EXP/.lock`` for as long as they run, and the file says who holds it: pid, host, start time and
command. A second run on the same directory stops at once with one error line naming the first.
The kernel drops the lock when its process ends in any way (a crash, SIGKILL), so a dead run
leaves only the file's text: the next run reports that stale lock as a warning and takes it
over. A clean end empties the file. Under ``torchrun`` only rank 0 takes the lock
(:func:`lock_ranks`) and the other ranks learn the outcome from it. The lock is re-entrant
within a process (``train-meta`` holds it around the trainer, which takes it again).
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import shlex
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from sertk.errors import SertkError

log = logging.getLogger(__name__)
LOCK_NAME = ".lock"
DEAD_HOLDER_WAIT = 10.0  # seconds to let children of a dead holder (loader workers) exit
_HELD: dict[str, list[int]] = {}  # real path of a lock file -> [fd, depth]


def lock_path(exp: str | Path) -> Path:
    return Path(exp) / LOCK_NAME


def read_info(path: str | Path) -> dict[str, str]:
    """The ``key: value`` lines of a lock file ({} when empty or missing)."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return {}
    return dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)


def describe(info: dict[str, str]) -> str:
    return (f"pid {info.get('pid', '?')} on {info.get('host', '?')}, started "
            f"{info.get('started', '?')}: {info.get('command', '?')}")


def _info_text() -> str:
    command = shlex.join(sys.argv).replace("\n", " ")
    return (f"pid: {os.getpid()}\nhost: {socket.gethostname()}\n"
            f"started: {datetime.now().astimezone().isoformat(timespec='seconds')}\n"
            f"command: {command}\n")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _dead_here(info: dict[str, str]) -> bool:
    """The holder named in ``info`` ran on this host and its pid no longer exists."""
    pid = info.get("pid", "")
    return info.get("host") == socket.gethostname() and pid.isdigit() and not pid_alive(int(pid))


def _try_flock(fd: int, path: Path) -> bool:
    """Take the exclusive lock without blocking: True when taken, False when another
    process holds it. Where the file system has no locks, decide from the pid in the file."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    except OSError as exc:
        if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            raise
    info = read_info(path)
    log.warning("%s: the file system does not support locks; deciding from the pid in it",
                path)
    return not info.get("pid") or _dead_here(info) or info["pid"] == str(os.getpid())


def _wait_for_lock(fd: int, path: Path) -> dict[str, str] | None:
    """Try the lock; None when taken, else the holder's info. A holder that is dead on this
    host (its forked children still hold the lock, e.g. DataLoader workers) gets a few
    seconds to go away."""
    deadline = time.monotonic() + DEAD_HOLDER_WAIT
    while not _try_flock(fd, path):
        info = read_info(path)
        if not info:  # the holder has not written its info yet
            time.sleep(0.1)
            info = read_info(path)
        if not _dead_here(info) or time.monotonic() > deadline:
            return info
        time.sleep(0.2)
    return None


def acquire(exp: str | Path) -> Path:
    """Lock ``exp`` (created if needed) for this process; returns the lock file. Raises a
    ``SertkError`` naming the holder when another run has it."""
    exp = Path(exp)
    exp.mkdir(parents=True, exist_ok=True)
    path = lock_path(exp)
    key = os.path.realpath(path)
    if key in _HELD:
        _HELD[key][1] += 1
        return path
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        holder = _wait_for_lock(fd, path)
        if holder is not None:
            dead = " (that pid has exited; a child of it still holds the lock)" \
                if _dead_here(holder) else ""
            raise SertkError(f"{exp} is in use by another run: {describe(holder)}{dead}; "
                             f"wait for it to finish or stop it (lock: {path})")
        old = read_info(path)
        if old.get("pid"):
            state = "exited" if _dead_here(old) else "no longer holds it"
            log.warning("%s: taking over a stale lock of %s (%s); that run ended without "
                        "finishing (killed or crashed)", path, describe(old), state)
        data = _info_text().encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        raise
    _HELD[key] = [fd, 1]
    return path


def release(exp: str | Path) -> None:
    """Undo one ``acquire``; the last one empties the file (a clean end) and unlocks it."""
    key = os.path.realpath(lock_path(exp))
    held = _HELD.get(key)
    if held is None:
        return
    held[1] -= 1
    if held[1] > 0:
        return
    del _HELD[key]
    fd = held[0]
    try:
        os.ftruncate(fd, 0)
    except OSError:
        pass
    finally:
        os.close(fd)  # closing drops the flock


@contextmanager
def exp_lock(exp: str | Path) -> Iterator[Path]:
    """Hold the lock of ``exp`` around a block."""
    path = acquire(exp)
    try:
        yield path
    finally:
        release(exp)


@contextmanager
def lock_ranks(exp: str | Path, info: Any) -> Iterator[None]:
    """``exp_lock`` for a (possibly distributed) training: rank 0 takes the lock and every rank
    stops when it could not (no rank is left waiting in a collective)."""
    err: SertkError | None = None
    if info.is_main:
        try:
            acquire(exp)
        except SertkError as exc:
            err = exc
    if info.distributed:
        import torch

        from sertk.train.distributed import all_reduce_sum

        failed = all_reduce_sum(torch.tensor([float(err is not None)], device=info.device),
                                info)
        if failed.item() and err is None:
            raise SertkError(f"{exp} is in use by another run (see rank 0's error)")
    if err is not None:
        raise err
    try:
        yield
    finally:
        if info.is_main:
            release(exp)
