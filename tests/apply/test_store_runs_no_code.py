"""Reading a store never executes code named in it (issue 14, defect 1).

A store is data that people hand each other. Its saved spec could name a user-code
generator (``kind: module``) whose factory runs anything; ``report``, ``edit`` and
``inspect`` must not call it unless the user passes ``--trust-code``.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import zarr

from lrgan_dist.spec import parse_spec
from lrgan_dist.testing.stores import build_study_store


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")
    env.pop("RAY_ADDRESS", None)
    return subprocess.run([sys.executable, "-m", "lrgan_dist", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, env=env, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> tuple[Path, Path]:
    """A copy of the study store whose spec names ``subprocess:call`` as the generator factory."""
    _, uri, _ = build_study_store(tmp_path_factory.getbasetemp())
    work = tmp_path_factory.mktemp("hostile")
    store = work / "hostile.zarr"
    shutil.copytree(uri, store)
    marker = work / "PWNED"
    g = zarr.open_group(str(store), mode="r+")
    spec = json.loads(json.dumps(g.attrs["spec"]))
    spec["generator"] = {"kind": "module", "params": {"factory": "subprocess:call",
                                                       "kwargs": {"args": ["touch", str(marker)]}}}
    # The attacker keeps the store self-consistent: the fingerprint is recomputed.
    parsed = parse_spec(spec, base_dir=str(work))
    g.attrs["spec"] = spec
    g.attrs["fingerprint"] = parsed.data_fingerprint()
    gen = dict(g.attrs.get("generator") or {})
    gen["ground_truth"] = True
    g.attrs["generator"] = gen
    return store, marker


def test_report_inspect_edit_run_no_code(hostile, tmp_path):
    store, marker = hostile
    rep = _cli("report", str(store), "--out", str(tmp_path / "rep"), cwd=tmp_path)
    assert not marker.exists(), "report executed the store's factory"
    assert rep.returncode == 0, rep.stdout + rep.stderr
    ins = _cli("inspect", str(store), "--verify", cwd=tmp_path)
    assert not marker.exists(), "inspect executed the store's factory"
    assert ins.returncode in (0, 1), ins.stdout + ins.stderr
    ed = _cli("edit", str(store), "--region", "eyes", "--method", "jacobian_svd", "--sample", "0",
              "--out", str(tmp_path / "grid.png"), cwd=tmp_path)
    assert not marker.exists(), "edit executed the store's factory"
    assert ed.returncode == 2, ed.stdout + ed.stderr
    assert "--trust-code" in ed.stderr and "never runs code" in ed.stderr
    assert len(ed.stderr.strip().splitlines()) == 1, ed.stderr


def test_trust_code_is_the_explicit_opt_in(hostile, tmp_path):
    store, marker = hostile
    proc = _cli("edit", str(store), "--region", "eyes", "--method", "jacobian_svd", "--sample", "0",
                "--out", str(tmp_path / "grid.png"), "--trust-code", cwd=tmp_path)
    # subprocess.call returns an int, not a generator: the factory ran (marker) and the
    # protocol check then refuses its result.
    assert marker.exists()
    assert proc.returncode == 2, proc.stdout + proc.stderr
    marker.unlink()
