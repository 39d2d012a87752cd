"""The fault matrix (issue 14): every fault, then the same command again, gives a store
bit-identical to an undisturbed run's.

One tiny synthetic job (8 samples in 4 chunks, two methods, all five stages) is run once
undisturbed (``clean``). Each case runs it through ``lrgan-dist submit`` in a subprocess,
slowed by :class:`~lrgan_dist.testing.faults.Faults` in the stage the fault strikes, and
spreads the faults over the stages so that each stage's resume is exercised once:

============== ====================================== ================== ====================
case           fault                                  strikes in         the faulty run
============== ====================================== ================== ====================
sigint-driver  SIGINT (Ctrl-C) to the driver          jacobians          exit 1, one line
sigterm-driver SIGTERM to the driver                  factorize          exit 1, one line
sigkill-driver SIGKILL to the driver                  transfer (realized) killed (-9)
sigkill-worker SIGKILL to the task worker of a unit   population         recovers, exit 0
disk-full      the store's filesystem fills up        wherever it fills  exit 1, one line
============== ====================================== ================== ====================

Disk full: a small tmpfs mounted in a mount namespace of the test's own (root may mount
there: the suite already runs in a private network namespace, tests/conftest.py), sized
to fill up part-way through the run; the resumed run gets a larger one (``mount -o
remount``), as a user would free space. Where mounting is not permitted the case is
skipped: tests/test_hardening.py's filesystem-full injection covers it at the worker level.

The comparison (:func:`assert_same_store`) decodes every array of both stores and requires
the same groups and arrays, metadata and values, NaNs equal by position; only the
attributes :data:`VARIES` names may differ.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pytest
import zarr

from lrgan_dist.testing.cli import cli, write_spec
from lrgan_dist.testing.faults import cli_command, interrupt, read_trace
from lrgan_dist.testing.ray_local import ray_env

pytestmark = pytest.mark.slow

N, CHUNK, ACTORS = 8, 2, 2
DELAY = 2.0  # seconds per unit of the stage the fault strikes in: the fault lands while units are pending

#: Attributes that legitimately differ between two runs of one spec, and nothing else:
#: ``created`` (root and every directions group) and ``lrgan_dist_creating`` (root) are the
#: wall-clock times the store and groups were made; the root ``spec`` records the store's
#: own URI (``store.uri``, each store of the matrix lives at its own path), compared
#: without it -- the data fingerprint (``fingerprint``) is compared as is.
VARIES = ("created", "lrgan_dist_creating")


def _spec_without_uri(spec: Any) -> Any:
    spec = json.loads(json.dumps(spec))
    spec.get("store", {}).pop("uri", None)
    return spec


def _attrs(path: str, attrs: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in attrs.items() if k not in VARIES}
    if path == "" and "spec" in out:
        out["spec"] = _spec_without_uri(out["spec"])
    return out


def _nodes(store: Path) -> dict[str, Any]:
    """Every group and array of a store (listed from the directories, not from the
    consolidated metadata): path → group attributes or array (metadata, values)."""
    out: dict[str, Any] = {}

    def walk(grp: zarr.Group, prefix: str) -> None:
        out[prefix] = ("group", _attrs(prefix, dict(grp.attrs)))
        for name, arr in grp.arrays():
            meta = arr.metadata.to_dict()
            meta["attributes"] = _attrs(prefix + name, dict(meta.get("attributes", {})))
            out[prefix + name] = ("array", meta, arr[...])
        for name, sub in grp.groups():
            walk(sub, prefix + name + "/")

    walk(zarr.open_group(str(store), mode="r", use_consolidated=False), "")
    return out


def assert_same_store(clean: Path, other: Path) -> None:
    """``other`` holds exactly ``clean``'s groups and arrays with equal metadata and
    bit-equal decoded values (same dtype and shape, NaNs equal by position), and its
    consolidated metadata lists the same nodes."""
    A, B = _nodes(clean), _nodes(other)
    assert sorted(A) == sorted(B), (sorted(set(A) ^ set(B)))
    for path, a in A.items():
        b = B[path]
        assert a[0] == b[0], path
        if a[0] == "group":
            assert a[1] == b[1], (path, a[1], b[1])
            continue
        assert a[1] == b[1], (path, a[1], b[1])
        x, y = np.asarray(a[2]), np.asarray(b[2])
        assert x.dtype == y.dtype and x.shape == y.shape, (path, x.dtype, y.dtype, x.shape, y.shape)
        if x.dtype.kind in "fc":
            # bit-equal but for NaN payloads: equal values, NaNs at the same positions, equal signs (-0.0 vs 0.0)
            same = np.array_equal(x, y, equal_nan=True)
            if same and x.dtype.kind == "f":
                num = ~np.isnan(x)
                same = np.array_equal(np.signbit(x[num]), np.signbit(y[num]))
            if not same:
                diff = np.nanmax(np.abs(x.astype(np.complex128) - y.astype(np.complex128)))
                raise AssertionError(f"{path}: values differ (max |diff| {diff:.3g}; NaNs at the same positions: "
                                     f"{np.array_equal(np.isnan(x), np.isnan(y))})")
        else:
            assert np.array_equal(x, y), f"{path}: values differ"
    listed = zarr.open_group(str(other), mode="r").metadata.consolidated_metadata
    assert listed is not None, "no consolidated metadata"
    assert sorted(listed.flattened_metadata) == sorted(p.rstrip("/") for p in B if p), "consolidated metadata is stale"


# --------------------------------------------------------------------------- the job


@pytest.fixture(scope="module")
def job(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("matrix")
    return write_spec(tmp / "job.yaml", samples={"count": N, "seed": 5},
                      generator={"kind": "synthetic", "params": {"latent_dim": 32, "resolution": 16, "seed": 0}},
                      grid={"resolution": 16}, regions={"eyes": {"box": [0.35, 0.28, 0.56, 0.72]}},
                      compute={"actors": ACTORS, "jvp_chunk": 16},
                      store={"uri": str(tmp / "unused.zarr"), "chunk_samples": CHUNK})


def _submit(job: Path, store: Path) -> tuple[str, ...]:
    return ("submit", str(job), "--store", str(store), "--no-progress")


def _resume(job: Path, store: Path, prefix: tuple[str, ...] = ()) -> dict[str, Any]:
    """The same command again, without faults: exit 0, every sample done."""
    if prefix:
        proc = subprocess.run([*prefix, *_lrgan(), *_submit(job, store), "--json"], capture_output=True, text=True,
                              env=ray_env(), stdin=subprocess.DEVNULL, timeout=600)
    else:
        proc = cli(*_submit(job, store), "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["summary"]["samples"]["done"] == N
    return report


def _lrgan() -> list[str]:
    return [sys.executable, "-m", "lrgan_dist"]


@pytest.fixture(scope="module")
def clean(job, tmp_path_factory) -> Path:
    store = tmp_path_factory.mktemp("clean") / "clean.zarr"
    _resume(job, store)
    return store


# --------------------------------------------------------------------------- signals


def _started(trace: Path, stage: str) -> list[int]:
    return [t.pid for t in read_trace(trace) if t.stage == stage]


# case: (stage the fault strikes in, signal, whom it goes to)
SIGNALS = {
    "sigint-driver": ("jacobians", signal.SIGINT, "driver"),
    "sigterm-driver": ("factorize", signal.SIGTERM, "driver"),
    "sigkill-driver": ("transfer.realized", signal.SIGKILL, "driver"),
    "sigkill-worker": ("population", signal.SIGKILL, "worker"),
}


def _one_line_interrupt(err: str) -> None:
    # no Python traceback, no native crash dump, not Ray's own SIGTERM handler
    assert "Traceback" not in err and "*** " not in err and "SIGTERM received" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith("interrupted")]
    assert lines == ["interrupted: finished chunks are saved; run the same command again to resume"], err


@pytest.mark.parametrize("case", [*SIGNALS, "disk-full"])
def test_fault_then_resume_is_bit_identical(case, job, clean, tmp_path):
    if case == "disk-full":
        _disk_full_case(job, clean, tmp_path)
        return
    stage, sig, whom = SIGNALS[case]
    store, trace = tmp_path / "s.zarr", tmp_path / "trace"
    cmd = cli_command(*_submit(job, store), unit_delay=DELAY, delay_stage=stage, trace=str(trace))
    # the fault strikes once a unit of the stage has started after the first wave (ACTORS
    # units at once) was handed out: some of the stage's units are done, others pending
    ready: Callable[[], bool] = lambda: len(_started(trace, stage)) > ACTORS  # noqa: E731
    victim: list[int] = []

    def worker() -> int:
        victim.append(_started(trace, stage)[-1])
        return victim[0]

    proc = interrupt(cmd, ready, sig, target=worker if whom == "worker" else None)
    if whom == "worker":
        assert proc.returncode == 0, proc.stderr  # the killed task was retried in another worker
        retried = [t for t in read_trace(trace) if t.stage == stage]
        assert len(retried) > len({t.unit for t in retried}), "the killed unit was not run again"
    elif sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
    else:
        assert proc.returncode == 1, (proc.stdout, proc.stderr)
        _one_line_interrupt(proc.stderr)
    done = int((zarr.open_group(str(store), mode="r")["status"][:] == 1).sum())
    if stage == "jacobians":
        assert 0 < done < N, done  # the fault struck mid-stage
    report = _resume(job, store)
    assert report["stages"]["jacobians"]["computed"] == N - done  # finished samples are not recomputed
    assert_same_store(clean, store)


def test_the_comparison_sees_one_flipped_bit_and_one_attribute(clean, tmp_path):
    """assert_same_store can fail: a copy passes, one bit or one attribute changed does not."""
    copy = Path(shutil.copytree(clean, tmp_path / "copy.zarr"))
    assert_same_store(clean, copy)
    g = zarr.open_group(str(copy), mode="r+", use_consolidated=False)
    arr = g["population/eyes/lowrankgan/gram_in"]
    x = arr[...]
    x.view(f"u{x.dtype.itemsize}").flat[0] ^= 1  # the least significant bit of one value
    arr[...] = x
    with pytest.raises(AssertionError, match="gram_in: values differ"):
        assert_same_store(clean, copy)
    arr[...] = zarr.open_group(str(clean), mode="r")["population/eyes/lowrankgan/gram_in"][...]
    assert_same_store(clean, copy)
    g["population"].attrs["samples"] = N - 1
    with pytest.raises(AssertionError, match="population"):
        assert_same_store(clean, copy)


# --------------------------------------------------------------------------- disk full


def _pages(root: Path) -> int:
    return sum(math.ceil(p.stat().st_size / 4096) for p in root.rglob("*") if p.is_file())


@contextlib.contextmanager
def _small_disk(where: Path, size: int) -> Iterator[tuple[int, Path]]:
    """A tmpfs of ``size`` bytes mounted at ``where`` in a mount namespace of its own, kept
    alive by a sleeping process; yields that process's pid (``nsenter -t PID -m`` runs a
    command inside) and the path under which this process sees the tmpfs."""
    if not (shutil.which("unshare") and shutil.which("nsenter")):
        pytest.skip("no unshare/nsenter: the filesystem-full injection of tests/test_hardening.py covers disk full")
    where.mkdir()
    holder = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
                               f"mount -t tmpfs -o size={size} lrgan-fault '{where}' && echo mounted && exec sleep 900"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert holder.stdout is not None
        if holder.stdout.readline().strip() != "mounted":
            holder.wait(timeout=10)
            pytest.skip(f"mount -t tmpfs not permitted here ({holder.stderr.read().strip() if holder.stderr else ''}); "
                        "the filesystem-full injection of tests/test_hardening.py covers disk full")
        yield holder.pid, Path(f"/proc/{holder.pid}/root") / str(where).lstrip("/")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)


def _disk_full_case(job: Path, clean: Path, tmp_path: Path) -> None:
    full = _pages(clean) + _pages(clean.with_name("clean-report"))
    size = int(0.6 * full) * 4096  # fills up part-way through the later stages (the jacobians finish: asserted below)
    disk = tmp_path / "disk"
    with _small_disk(disk, size) as (pid, seen):
        inside = ("nsenter", "-t", str(pid), "-m", f"--wd={os.getcwd()}", "--")
        store = disk / "s.zarr"
        first = subprocess.run([*inside, *_lrgan(), *_submit(job, store)], capture_output=True, text=True,
                               env=ray_env(), stdin=subprocess.DEVNULL, timeout=600)
        assert first.returncode == 1, (first.stdout, first.stderr)
        assert "Traceback" not in first.stderr, first.stderr
        errors = [ln for ln in first.stderr.splitlines() if ln.startswith("error:")]
        assert len(errors) == 1 and "No space left on device" in errors[0], first.stderr
        assert (zarr.open_group(str(seen / "s.zarr"), mode="r")["status"][:] == 1).all()  # jacobians finished
        subprocess.run([*inside[:4], "mount", "-o", f"remount,size={4 * full * 4096}", str(disk)], check=True)
        assert _resume(job, store, prefix=inside)["stages"]["jacobians"]["computed"] == 0
        assert_same_store(clean, seen / "s.zarr")
