"""Landmark regions end to end (issue 13): spec fields, exit 2 without mediapipe, the
no-face path through the jacobians and factorize workers (stand-in detector, no Ray), and
the real-model job through the CLI at 8 samples (slow; needs gan_face_generate and mediapipe)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from lrgan_dist.regions import RegionSpec
from lrgan_dist.spec import SpecError, parse_spec
from lrgan_dist.testing.landmarks import StandInDetector

ROOT = Path(__file__).resolve().parents[1]


def _spec_dict(tmp: Path, regions: dict) -> dict:
    return {"name": "lm", "generator": {"kind": "synthetic", "params": {"latent_dim": 64, "resolution": 32, "seed": 0}},
            "samples": {"count": 8, "seed": 0}, "grid": {"resolution": 16}, "regions": regions,
            "methods": {"jacobian_svd": {}, "projected_svd": {}},
            "compute": {"actors": 1, "jvp_chunk": 16}, "store": {"uri": str(tmp / "s.zarr"), "chunk_samples": 4}}


@pytest.mark.parametrize("region,field", [({"landmarks": "eye"}, "landmarks"), ({"landmarks": "eyes", "dilate": -1}, "dilate"),
                                          ({"box": [0, 0, 0.5, 0.5], "dilate": 1}, "dilate")])
def test_landmark_region_fields(tmp_path, region, field):
    with pytest.raises(SpecError) as e:
        parse_spec(_spec_dict(tmp_path, {"r": region}))
    assert e.value.field == f"regions.r.{field}"
    ok = parse_spec(_spec_dict(tmp_path, {"r": {"landmarks": "mouth", "dilate": 2}}))
    assert ok.region("r").kind == "landmarks" and ok.region("r").dilate == 2.0
    assert RegionSpec("b", box=(0, 0, 1, 0.5)).dilate is None  # existing specs keep their fingerprint


def test_validate_without_mediapipe_exits_2(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import lrgan_dist.landmarks as lm
    from lrgan_dist.cli import app

    def missing():
        raise lm.LandmarkError(f"landmark regions need mediapipe (Face Mesh); install with `{lm.FACES_INSTALL}` "
                               "(import failed: ModuleNotFoundError: No module named 'mediapipe')")

    monkeypatch.setattr(lm, "_import_face_mesh", missing)
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(_spec_dict(tmp_path, {"eyes": {"landmarks": "eyes"}})))
    res = CliRunner().invoke(app, ["validate", str(job)])
    assert res.exit_code == 2, res.output
    assert "regions.eyes.landmarks" in res.output and "pip install --no-deps mediapipe==0.10.14" in res.output


def test_no_face_sample_is_left_out_of_that_region_only(tmp_path, monkeypatch):
    import lrgan_dist.landmarks as lm
    from lrgan_dist.apply.build import make_generator
    from lrgan_dist.pipeline.stages import factorize, jacobians
    from lrgan_dist.store.verify import verify_store
    from lrgan_dist.store.zarrstore import Store

    monkeypatch.setattr(lm, "FaceMeshDetector", StandInDetector)
    StandInDetector.calls = 0
    spec = parse_spec(_spec_dict(tmp_path, {"box": {"box": [0.2, 0.2, 0.6, 0.8]}, "eyes": {"landmarks": "eyes"}}))
    gen = make_generator(spec, "cpu")
    layout, masks = jacobians.plan_layout(spec, gen)
    assert layout.landmark_regions == ("eyes",) and "eyes" in layout.per_sample_masks
    uri = str(tmp_path / "s.zarr")
    Store.create(uri, layout=layout, spec=spec.to_dict(), fingerprint=spec.data_fingerprint(),
                 generator_info={}, static_masks=masks)
    w = jacobians.JacobianWorker(spec, uri)
    assert StandInDetector.calls == 1  # once per worker
    for unit in layout.chunks():
        w.run(unit)
    st = Store.open(uri)
    assert (st.status() == 1).all()  # every sample done
    found = st.read("regions/eyes/found")
    assert found.tolist() == [1, 0] * 4
    reason = st.read("regions/eyes/reason")
    assert all(("no face" in r) == (i % 2 == 1) for i, r in enumerate(reason))
    gi = st.read("regions/eyes/gram_in")
    assert np.isnan(gi[1::2]).all() and np.isfinite(gi[0::2]).all()
    assert np.isfinite(st.read("regions/box/gram_in")).all()  # other region untouched
    m = st.read("regions/eyes/mask")
    assert (m[1::2] == 0).all() and (m[0::2].sum((1, 2)) > 0).all()
    groups = factorize.result_groups(spec, Store.open(uri, mode="a"))
    for unit in layout.chunks():
        factorize.factorize_unit(spec, uri, unit, groups)
    st = Store.open(uri)
    for region, label, path in groups:
        fs = st.read(f"{path}/status")
        want = [1, 2] * 4 if region == "eyes" else [1] * 8
        assert fs.tolist() == want, (region, label)
    assert verify_store(st, full=True) == []  # NaN Grams of no-face samples are by design
    from lrgan_dist.analysis.summary import format_summary, summarize

    summ = summarize(spec, st)
    assert summ["samples"]["no_face"] == {"eyes": 4}
    assert "no face: eyes 4" in format_summary({"store": uri, "summary": summ})


needs_real = pytest.mark.skipif(
    importlib.util.find_spec("gan_face_generate") is None or importlib.util.find_spec("mediapipe") is None,
    reason="needs gan_face_generate (pip install --no-deps gan-face-generate==1.1.1) and mediapipe "
           "(pip install 'lrgan-dist[faces]' && pip install --no-deps mediapipe==0.10.14)")


@pytest.mark.slow
@pytest.mark.timeout(1500)
@needs_real
def test_faces_dcgan_job_end_to_end(tmp_path):
    from lrgan_dist.testing.cli import cli

    store = str(tmp_path / "faces.zarr")
    # 8 samples (one chunk): every stage and all 36 result groups, at half the cost of 16
    p = cli("submit", str(ROOT / "jobs/faces_dcgan.yaml"), "--samples", "8", "--store", store, "--no-progress",
            "--report", str(tmp_path / "report"), timeout=1500)
    assert p.returncode == 0, p.stdout + p.stderr
    v = cli("inspect", store, "--verify", "--json", timeout=300)
    assert v.returncode == 0, v.stdout + v.stderr
    out = json.loads(v.stdout)
    problems = out.get("verify", out).get("problems", [])
    assert problems == [], problems
    assert (tmp_path / "report" / "report.md").exists()
