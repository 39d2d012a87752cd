"""End to end through the CLI, as a user runs it: submit, inspect, resume, refusal."""
from __future__ import annotations

import numpy as np
import pytest
import zarr

from lrgan_dist.testing.cli import ROOT, cli, cli_json, write_spec


@pytest.fixture(scope="module")
def small_store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pipe")
    job = write_spec(tmp / "job.yaml")
    report = cli_json("submit", str(job), "--json", "--no-progress")
    return job, tmp / "store.zarr", report


def test_submit_completes_and_summarises(small_store):
    job, store, report = small_store
    s = report["summary"]["samples"]
    assert s == {"total": 12, "pending": 0, "done": 12, "failed": 0}
    jac = report["stages"]["jacobians"]
    assert jac["computed"] == 12 and jac["units"] == 3
    rows = {(r["region"], r["method"]): r for r in report["summary"]["directions"]}
    assert set(rows) == {(r, m) for r in ("eyes", "eyes_mask") for m in ("lowrankgan", "jacobian_svd")}
    assert rows[("eyes_mask", "lowrankgan")]["truth"] == "eyes"
    assert "truth" not in rows[("eyes", "lowrankgan")]  # fixed boxes are scored only with truth: PART
    assert rows[("eyes", "lowrankgan")]["done"] == 12


def test_inspect_reports_complete(small_store):
    _, store, _ = small_store
    info = cli_json("inspect", str(store), "--json")
    assert info["complete"] is True
    assert info["samples"]["done"] == 12
    paths = {a["path"]: a for a in info["arrays"]}
    assert paths["latents"]["shape"] == [12, 64] and paths["latents"]["chunks"] == [4, 64]
    assert paths["regions/eyes/gram_in"]["dimension_names"] == ["sample", "latent_i", "latent_j"]
    assert paths["regions/eyes_mask/mask"]["shape"] == [12, 32, 32]
    assert paths["directions/eyes/lowrankgan/vectors"]["shape"] == [12, 64, 64]
    assert info["methods"]["eyes"]["lowrankgan"]["done"] == 12
    text = cli("inspect", str(store))
    assert text.returncode == 0 and "complete" in text.stdout


def test_store_opens_without_our_code(small_store):
    _, store, _ = small_store
    g = zarr.open_group(str(store), mode="r")
    assert g["status"][:].tolist() == [1] * 12
    lat = g["latents"][:]
    assert np.isfinite(lat).all()
    assert g.attrs["fingerprint"] and g.attrs["spec"]["generator"]["kind"] == "synthetic"
    v = g["directions/eyes/lowrankgan/vectors"][0]
    r = int(g["directions/eyes/lowrankgan/rank"][0])
    rows = v[np.isfinite(v).all(axis=1)]
    assert 0 < rows.shape[0] <= r
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)


def test_resubmit_computes_nothing(small_store):
    job, store, _ = small_store
    before = zarr.open_group(str(store), mode="r")["regions/eyes/gram_in"][:]
    report_md = store.parent / "store-report" / "report.md"
    mtime = report_md.stat().st_mtime_ns
    report = cli_json("submit", str(job), "--json", "--no-progress")
    assert report["stages"]["jacobians"]["computed"] == 0
    assert report["stages"]["factorize"]["units"] == 0
    assert report["stages"]["population"]["skipped"] is True  # nothing recomputed
    tr = report["stages"]["transfer"]
    assert (tr["linear"]["units"], tr["realized"]["units"], tr["similarity"]["groups"]) == (0, 0, 0)
    assert report["report"]["unchanged"] is True
    assert report_md.stat().st_mtime_ns == mtime  # the report was not rewritten
    after = zarr.open_group(str(store), mode="r")["regions/eyes/gram_in"][:]
    np.testing.assert_array_equal(before, after)


def test_other_spec_refused_unless_fresh(small_store, tmp_path):
    job, store, _ = small_store
    other = write_spec(tmp_path / "other.yaml", samples={"count": 12, "seed": 5},
                       store={"uri": str(store), "chunk_samples": 4})
    proc = cli("submit", str(other), "--no-progress")
    assert proc.returncode == 2, proc.stderr
    assert "another job spec" in proc.stderr and "--fresh" in proc.stderr
    # untouched
    assert zarr.open_group(str(store), mode="r").attrs["spec"]["samples"]["seed"] == 0


def test_fresh_replaces(tmp_path):
    job = write_spec(tmp_path / "job.yaml", samples={"count": 4}, methods={"jacobian_svd": {}},
                     store={"uri": str(tmp_path / "s.zarr"), "chunk_samples": 4}, compute={"actors": 1})
    cli_json("submit", str(job), "--json", "--no-progress")
    other = write_spec(tmp_path / "job2.yaml", samples={"count": 4, "seed": 3}, methods={"jacobian_svd": {}},
                       store={"uri": str(tmp_path / "s.zarr"), "chunk_samples": 4}, compute={"actors": 1})
    report = cli_json("submit", str(other), "--json", "--no-progress", "--fresh")
    assert report["summary"]["samples"]["done"] == 4
    assert zarr.open_group(str(tmp_path / "s.zarr"), mode="r").attrs["spec"]["samples"]["seed"] == 3


def test_validate_command(tmp_path):
    out = cli_json("validate", str(ROOT / "jobs" / "quickstart.yaml"))
    assert out["valid"] and len(out["fingerprint"]) == 64
    bad = tmp_path / "bad.yaml"
    bad.write_text("regions: {eyes: {box: [0.3, 0.2, 0.5, 0.8]}}\nsampels: {count: 3}\n")
    proc = cli("validate", str(bad))
    assert proc.returncode == 2
    assert "sampels" in proc.stderr and "did you mean 'samples'" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_quickstart_job_through_the_cli(tmp_path):
    """The README's main command on the embedded default (fewer samples to keep CI short)."""
    store = tmp_path / "qs.zarr"
    report = cli_json("submit", str(ROOT / "jobs" / "quickstart.yaml"), "--store", str(store), "--samples", "16",
                      "--json", "--no-progress")
    assert report["summary"]["samples"]["done"] == 16
    assert set(report["stages"]) == {"jacobians", "factorize", "population", "transfer", "previews"}
    info = cli_json("inspect", str(store), "--json")
    assert info["complete"] is True
    assert (tmp_path / "qs-report" / "report.html").exists()
    # the quickstart's solver settings still find the eye subspace (scored on ground truth)
    rows = {(r["region"], r["method"]): r for r in report["summary"]["directions"]}
    lg, svd = rows[("eyes_mask", "lowrankgan")], rows[("eyes_mask", "jacobian_svd")]
    assert lg["max_sine_median"] < 0.05 and lg["coverage_mean"] > 0.95, lg
    assert svd["max_sine_median"] > 0.5, svd
