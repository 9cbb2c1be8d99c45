"""One writer per output: ``OUT.lock`` beside the result, held while a run or a merge writes it.

The lock file holds the writer's pid, host and start time (JSON). It is taken with an
exclusive ``flock`` on the file, which the kernel drops when the process dies, so a lock left
by a killed run is never live. Where ``flock`` is not available (some network file systems)
the file's contents decide: a lock whose pid is dead on this host is stale and taken over; a
live pid, or another host's lock, is refused with a message naming it.
"""
from __future__ import annotations

import json
import os
import socket
import sys
from datetime import datetime, timezone
from pathlib import Path

from .config import SpecError

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None


class OutputLocked(SpecError):
    """Another live process is writing the same output."""


def lock_path(out: str | os.PathLike) -> Path:
    p = Path(out)
    return p.with_name(p.name + ".lock")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _holder(info: dict) -> str:
    return (f"pid {info.get('pid')} on host {info.get('host')} (started {info.get('started', '?')}: "
            f"{info.get('command', '?')})")


class OutputLock:
    """Context manager: ``with OutputLock(out): ...`` writes ``out`` alone or raises OutputLocked."""

    def __init__(self, out: str | os.PathLike, what: str = "run"):
        self.out = Path(out)
        self.path = lock_path(out)
        self.what = what
        self.fd: int | None = None

    def __enter__(self) -> "OutputLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def _read(self) -> dict:
        try:
            return json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        host = socket.gethostname()
        for _ in range(20):  # retried only when the file was replaced between open and lock
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            flocked = False
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    flocked = True
                except BlockingIOError:
                    os.close(fd)
                    info = self._read()
                    raise OutputLocked(self._refusal(info, live=True)) from None
                except OSError:  # no flock on this file system: the contents decide
                    pass
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # the holder released (unlinked) it meanwhile: open the new one
                os.close(fd)
                continue
            info = self._read()
            if info and info.get("pid") != os.getpid():
                other_host = info.get("host") != host
                if other_host or (not flocked and _alive(int(info.get("pid", -1)))):
                    os.close(fd)
                    raise OutputLocked(self._refusal(info, live=not other_host))
                # same host and flock held by us (the kernel says nobody holds it), or a dead pid: stale
            record = {"pid": os.getpid(), "host": host, "what": self.what,
                      "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                      "command": " ".join(sys.argv[:1] + sys.argv[1:])[:300]}
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(record).encode(), 0)
            os.fsync(fd)
            self.fd = fd
            return
        raise OutputLocked(f"{str(self.path)!r}: could not take the output lock (it kept being replaced)")

    def _refusal(self, info: dict, live: bool) -> str:
        who = _holder(info) if info else "another process"
        if live:
            return (f"{str(self.out)!r} is being written by {who}; wait for it to finish, or stop it "
                    f"(its finished chunks are kept for --resume) - not started")
        return (f"{str(self.out)!r} is locked by {who}; another host's process cannot be checked from here: "
                f"if that run is no longer running, delete {str(self.path)!r} - not started")

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            os.unlink(self.path)  # while still holding it: a waiting writer then opens a fresh file
        except FileNotFoundError:
            pass
        os.close(self.fd)
        self.fd = None

