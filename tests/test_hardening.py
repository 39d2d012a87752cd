"""Bad input, corrupted stores, numerical failure: clear messages, nothing half-written."""
from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr

from lrgan_dist.pipeline.scheduler import prepare_store
from lrgan_dist.pipeline.stages.jacobians import JacobianWorker
from lrgan_dist.spec import load_spec
from lrgan_dist.store.zarrstore import DONE, FAILED, PENDING, Store
from lrgan_dist.testing.cli import cli, cli_json, write_spec


def _small(tmp_path: Path, **kw) -> Path:
    base = dict(samples={"count": 8}, methods={"jacobian_svd": {}}, compute={"actors": 1},
                store={"uri": str(tmp_path / "s.zarr"), "chunk_samples": 4})
    base.update(kw)
    return write_spec(tmp_path / "job.yaml", **base)


# --------------------------------------------------------------------------- worker level (no Ray)


def _run_units(spec, units=None):
    store = prepare_store(spec)
    w = JacobianWorker(spec, store.uri, torch_threads=1)
    for u in units or store.layout.chunks():
        w.run(u)
    return Store.open(store.uri)


def test_nan_sample_is_marked_failed_and_others_go_on(tmp_path, monkeypatch):
    spec = load_spec(_small(tmp_path))
    from lrgan_dist.generators import synthetic

    orig = synthetic.SyntheticFaces.forward

    def poisoned(self, x, anchor=None):
        y = orig(self, x, anchor)
        # samples whose positive first latent coordinate get one NaN pixel
        bad = (x[:, 0] > 0.0)[:, None, None, None]
        first = torch.zeros(y.shape[1:], dtype=torch.bool, device=y.device)
        first[0, 0, 0] = True
        return torch.where(bad & first, torch.full_like(y, float("nan")), y)

    monkeypatch.setattr(synthetic.SyntheticFaces, "forward", poisoned)
    store = _run_units(spec)
    lat = store.read("latents")
    expect_bad = lat[:, 0] > 0.0
    assert expect_bad.any() and not expect_bad.all(), "test needs a mix of good and bad samples"
    st = store.status()
    assert (st[expect_bad] == FAILED).all() and (st[~expect_bad] == DONE).all()
    errs = store.errors()
    assert set(errs) == set(np.flatnonzero(expect_bad).tolist())
    assert all("non-finite" in e for e in errs.values())
    gi = store.read("regions/eyes/gram_in")
    assert np.isnan(gi[expect_bad]).all() and np.isfinite(gi[~expect_bad]).all()


def test_disk_full_mid_unit_leaves_store_resumable(tmp_path, monkeypatch):
    spec = load_spec(_small(tmp_path))
    store = prepare_store(spec)
    w = JacobianWorker(spec, store.uri, torch_threads=1)
    w.run((0, 4))
    import zarr.core.array as za

    orig = za.Array.__setitem__
    calls = {"n": 0}

    def full(self, key, value):
        calls["n"] += 1
        if calls["n"] == 3:  # fail part-way through the unit's writes
            raise OSError(errno.ENOSPC, "No space left on device")
        return orig(self, key, value)

    monkeypatch.setattr(za.Array, "__setitem__", full)
    with pytest.raises(OSError):
        w.run((4, 8))
    monkeypatch.setattr(za.Array, "__setitem__", orig)
    s = Store.open(store.uri)
    assert s.status().tolist() == [DONE] * 4 + [PENDING] * 4  # status is written last
    assert s.pending_units() == [(4, 8)]
    w.run((4, 8))
    assert (Store.open(store.uri).status() == DONE).all()


# --------------------------------------------------------------------------- CLI level


@pytest.fixture(scope="module")
def done_store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hard")
    job = _small(tmp)
    cli_json("submit", str(job), "--json", "--no-progress")
    return job, tmp / "s.zarr"


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_verify_clean_store(done_store):
    _, store = done_store
    proc = cli("inspect", str(store), "--verify", "--json")
    assert proc.returncode == 0, proc.stdout
    assert json.loads(proc.stdout)["problems"] == []


def test_verify_detects_deleted_chunk(done_store, tmp_path):
    _, store = done_store
    s = _copy(store, tmp_path / "c.zarr")
    chunk = s / "regions" / "eyes" / "gram_in" / "c" / "1" / "0" / "0"
    assert chunk.exists()
    chunk.unlink()
    proc = cli("inspect", str(s), "--verify")
    assert proc.returncode == 1
    assert "regions/eyes/gram_in[4:8]: chunk missing for samples marked done" in proc.stdout


def test_verify_detects_missing_array_and_bad_fingerprint(done_store, tmp_path):
    _, store = done_store
    s = _copy(store, tmp_path / "m.zarr")
    shutil.rmtree(s / "regions" / "eyes" / "gram_out")
    g = zarr.open_group(str(s), mode="r+")
    g.attrs["fingerprint"] = "0" * 64
    proc = cli("inspect", str(s), "--verify", "--json")
    assert proc.returncode == 1
    problems = json.loads(proc.stdout)["problems"]
    assert any("gram_out" in p for p in problems)
    assert any("fingerprint" in p for p in problems)


def test_interrupted_unit_is_recomputed(done_store, tmp_path):
    """A unit whose data was written but whose status was not (killed mid-write)."""
    job, store = done_store
    s = _copy(store, tmp_path / "i.zarr")
    g = zarr.open_group(str(s), mode="r+")
    g["status"][4:8] = np.zeros(4, dtype=np.uint8)
    g["regions/eyes/gram_in"][4:8] = np.full((4, 64, 64), 7.0, dtype=np.float32)  # half-written garbage
    report = cli_json("submit", str(job), "--store", str(s), "--json", "--no-progress")
    assert report["stages"]["jacobians"]["computed"] == 4
    ref = zarr.open_group(str(store), mode="r")["regions/eyes/gram_in"][:]
    np.testing.assert_array_equal(zarr.open_group(str(s), mode="r")["regions/eyes/gram_in"][:], ref)


def test_store_not_writable(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    os.chmod(ro, 0o500)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as a user that ignores permissions")
        job = _small(tmp_path, store={"uri": str(ro / "s.zarr"), "chunk_samples": 4})
        proc = cli("submit", str(job), "--no-progress")
        assert proc.returncode == 2
        assert "not writable" in proc.stderr
    finally:
        os.chmod(ro, 0o700)


def test_foreign_directory_refused(tmp_path):
    d = tmp_path / "foreign"
    d.mkdir()
    (d / "data.txt").write_text("precious")
    job = _small(tmp_path, store={"uri": str(d), "chunk_samples": 4})
    proc = cli("submit", str(job), "--no-progress")
    assert proc.returncode == 2, proc.stderr
    assert (d / "data.txt").read_text() == "precious"


def test_inspect_missing_store(tmp_path):
    proc = cli("inspect", str(tmp_path / "nothing.zarr"))
    assert proc.returncode == 2
    assert "no store" in proc.stderr
