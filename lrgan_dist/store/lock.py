"""A store lease: one ``submit`` per store at a time (issue 14, item 5).

:func:`store_lease` is a context manager taken by ``submit`` for the run's duration.
The lease is a small JSON file *beside* the store (``<store>.lease``, so that ``--fresh``
removing the store never removes the lease) holding owner, host, pid, a random token,
the acquisition time and a heartbeat time that a daemon thread refreshes every
``timeout / 4`` seconds. A second ``submit`` while the lease is fresh fails with a
:class:`~.zarrstore.StoreError` naming the holder (CLI exit 2). A stale lease -- heartbeat
older than ``timeout``, or a holder on this host whose pid is gone -- is taken over with
a message. On leaving the context the lease is removed if it is still ours.

Local paths only take the lease atomically (``O_CREAT | O_EXCL``; a take-over writes a
new file and re-reads it to confirm). For ``s3://`` and other fsspec URIs the same file
is written through fsspec, best effort (no atomic create): two submits started within
one round trip of each other may both proceed.

Cost: one small file write per heartbeat; nothing per chunk.
"""
from __future__ import annotations

import contextlib
import getpass
import json
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from lrgan_dist.store.zarrstore import StoreError, _is_remote

__all__ = ["Lease", "store_lease", "lease_path", "DEFAULT_TIMEOUT_S"]

DEFAULT_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Lease:
    owner: str
    host: str
    pid: int
    token: str
    acquired: float
    heartbeat: float

    def describe(self, now: float | None = None) -> str:
        age = (now or time.time()) - self.heartbeat
        return f"{self.owner}@{self.host} pid {self.pid} (heartbeat {age:.0f} s ago)"


def lease_path(uri: str) -> str:
    """The lease file of a store: beside it, ``<store>.lease``."""
    return uri.removeprefix("file://").rstrip("/") + ".lease"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _File:
    """Read/write/create-exclusive/remove of the lease file, local or fsspec."""

    def __init__(self, path: str):
        self.path = path
        self.remote = _is_remote(path)
        if self.remote:
            import fsspec

            self.fs, self.fpath = fsspec.core.url_to_fs(path)

    def read(self) -> dict[str, Any] | None:
        try:
            if self.remote:
                with self.fs.open(self.fpath, "rb") as f:
                    return json.loads(f.read())
            with open(self.path, "rb") as f:
                return json.loads(f.read())
        except FileNotFoundError:
            return None
        except ValueError:
            return {}  # a half-written or foreign file: treated as stale

    def create(self, doc: dict[str, Any]) -> bool:
        data = json.dumps(doc).encode()
        if self.remote:
            if self.fs.exists(self.fpath):
                return False
            with self.fs.open(self.fpath, "wb") as f:
                f.write(data)
            return True
        parent = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(parent, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return True

    def replace(self, doc: dict[str, Any]) -> None:
        data = json.dumps(doc).encode()
        if self.remote:
            with self.fs.open(self.fpath, "wb") as f:
                f.write(data)
            return
        tmp = f"{self.path}.{os.getpid()}.tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, self.path)

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            if self.remote:
                self.fs.rm(self.fpath)
            else:
                os.unlink(self.path)


def _parse(doc: dict[str, Any] | None) -> Lease | None:
    if not doc:
        return None
    try:
        return Lease(owner=str(doc["owner"]), host=str(doc["host"]), pid=int(doc["pid"]), token=str(doc["token"]),
                     acquired=float(doc["acquired"]), heartbeat=float(doc["heartbeat"]))
    except (KeyError, TypeError, ValueError):
        return None


def _stale(lease: Lease | None, timeout: float, now: float) -> str | None:
    """Why ``lease`` may be taken over, or None while it is held."""
    if lease is None:
        return "unreadable lease file"
    if now - lease.heartbeat > timeout:
        return f"no heartbeat for {now - lease.heartbeat:.0f} s (timeout {timeout:.0f} s)"
    if lease.host == socket.gethostname() and not _pid_alive(lease.pid):
        return f"process {lease.pid} on this host is gone"
    return None


@contextlib.contextmanager
def store_lease(uri: str, timeout: float = DEFAULT_TIMEOUT_S, log: Callable[[str], None] | None = None,
                owner: str | None = None) -> Iterator[Lease]:
    """Hold the store's lease for the body of the ``with``; see the module docstring.

    Raises StoreError when another live process holds it.
    """
    f = _File(lease_path(uri))
    now = time.time()
    mine = Lease(owner=owner or _user(), host=socket.gethostname(), pid=os.getpid(), token=uuid.uuid4().hex,
                 acquired=now, heartbeat=now)
    doc = mine.__dict__.copy()
    if not f.create(doc):
        held_doc = f.read()
        held = _parse(held_doc)
        why = _stale(held, timeout, now) if held_doc is not None else None
        if held_doc is not None and why is None:
            assert held is not None
            raise StoreError(f"{uri}: store is in use by {held.describe(now)} (lease {f.path}); expected no other "
                             "submit on this store -- wait for it to finish, or remove the lease file if that "
                             "process is gone")
        f.replace(doc)
        if _parse(f.read()) != mine:
            raise StoreError(f"{uri}: another submit took the lease {f.path} at the same moment; expected one "
                             "submit per store -- try again")
        if held_doc is not None and log is not None:
            who = held.describe(now) if held is not None else "an unknown holder"
            log(f"store lease {f.path}: taking over from {who}: {why}")
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(max(timeout / 4, 0.05)):
            cur = _parse(f.read())
            if cur is None or cur.token != mine.token:
                return  # taken over (we were considered stale): stop touching it
            f.replace({**doc, "heartbeat": time.time()})

    thread = threading.Thread(target=beat, name="lrgan-store-lease", daemon=True)
    thread.start()
    try:
        yield mine
    finally:
        stop.set()
        thread.join(timeout=5)
        cur = _parse(f.read())
        if cur is not None and cur.token == mine.token:
            f.remove()


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid()) if hasattr(os, "getuid") else "unknown"
