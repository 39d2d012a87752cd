"""No-face samples through every stage on Ray (issue 13): a landmark region whose face the
detector does not find on half the samples, with the stand-in detector installed in every
worker by a stage hook. The no-face samples must be marked, left out of that region's
factorization, population, transfer scores and previews, counted in the summary and the
report, and the finished store must verify clean."""
from __future__ import annotations

import numpy as np
import pytest

from lrgan_dist.spec import parse_spec
from lrgan_dist.store.zarrstore import DONE, Store
from lrgan_dist.testing.landmarks import NO_FACE_REASON, StandInFaces

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    from lrgan_dist.pipeline.runtime import ray_session
    from lrgan_dist.pipeline.scheduler import submit

    tmp = tmp_path_factory.mktemp("noface")
    spec = parse_spec({
        "name": "noface", "generator": {"kind": "synthetic", "params": {"latent_dim": 32, "resolution": 32, "seed": 0}},
        "samples": {"count": 12, "seed": 0}, "grid": {"resolution": 16},
        "regions": {"box": {"box": [0.3, 0.25, 0.6, 0.75]}, "eyes": {"landmarks": "eyes"}},
        "methods": {"jacobian_svd": {}, "projected_svd": {}},
        "transfer": {"sources": 2, "directions": 2, "realized_pairs": 4, "strengths": [0.05], "similarity_samples": 4,
                     "score_on": {"box": ["box", "eyes"], "eyes": ["eyes", "box"]}},
        "previews": {"samples": 3, "directions": 1},
        "compute": {"actors": 2, "jvp_chunk": 16}, "store": {"uri": str(tmp / "s.zarr"), "chunk_samples": 4}})
    with ray_session(num_cpus=2):  # the driver never runs the detector: mediapipe is not needed
        out = submit(spec, show_progress=False, report_dir=str(tmp / "report"), hooks=StandInFaces())
    return spec, Store.open(spec.store.uri), out, tmp


ODD = np.arange(12) % 2 == 1  # the stand-in finds no face on odd batch positions = odd samples (chunks of 4)


def test_no_face_samples_are_marked_and_left_out_of_factorization(finished):
    spec, st, out, _ = finished
    assert (st.status() == DONE).all()  # the samples themselves are done: only the landmark region is missing
    assert st.read("regions/eyes/found").tolist() == (~ODD).astype(int).tolist()
    assert all((r == NO_FACE_REASON) == o for r, o in zip(st.read("regions/eyes/reason"), ODD))
    assert (st.read("regions/eyes/mask")[ODD] == 0).all()
    for label in ("jacobian_svd", "projected_svd"):
        eyes = st.status(f"directions/eyes/{label}/status")
        box = st.status(f"directions/box/{label}/status")
        assert (eyes[~ODD] == DONE).all() and (eyes[ODD] != DONE).all(), label
        assert (box == DONE).all(), label  # the box region keeps every sample
    assert out["stages"]["jacobians"]["no_face"] == {"eyes": 6}


def test_population_counts_only_samples_with_a_face(finished):
    _, st, _, _ = finished
    g = st.group
    assert g["population/eyes/jacobian_svd"].attrs["samples"] == 6
    assert g["population/box/jacobian_svd"].attrs["samples"] == 12
    # the population Gram of the eyes region is the mean over the samples with a face only
    gi = st.read("regions/eyes/gram_in")
    want = gi[~ODD].astype(np.float64).mean(0)
    np.testing.assert_allclose(np.asarray(g["population/eyes/jacobian_svd/gram_in"][...]), want, rtol=1e-6, atol=1e-12)


def test_transfer_and_previews_never_use_a_no_face_sample(finished):
    _, st, _, _ = finished
    g = st.group
    sources = np.asarray(g["transfer/linear/sources"][...])
    assert sources.size and not ODD[sources].any()
    assert (np.asarray(g["transfer/linear/status"][...]) == DONE).all()  # every target is scored ...
    for region in ("eyes", "box"):
        for label in ("jacobian_svd", "projected_svd"):
            on = f"transfer/linear/{region}/{label}/on"
            eyes = np.asarray(g[f"{on}/eyes/locality"][...])  # [S, N, k]
            box = np.asarray(g[f"{on}/box/locality"][...])
            assert np.isnan(eyes[:, ODD]).all()  # ... but not on a missing face
            # elsewhere NaN only where the source has no such direction (the same cells on every scored region)
            assert np.isfinite(eyes[:, ~ODD]).any()
            assert (np.isfinite(eyes[:, ~ODD]) == np.isfinite(box[:, ~ODD])).all()
            assert (np.isfinite(box[:, ODD]) == np.isfinite(box[:, ~ODD])).all()
    pairs = np.asarray(g["transfer/realized/pairs"][...])  # [P, 2] (source, target)
    assert pairs.size and not ODD[pairs[:, 0]].any() and ODD[pairs[:, 1]].any() and (~ODD[pairs[:, 1]]).any()
    for region in ("eyes", "box"):  # realized edits on a no-face target: not scored on eyes, scored on the box
        on = f"transfer/realized/{region}/jacobian_svd/on"
        e_in = np.asarray(g[f"{on}/eyes/energy_in"][...])  # [P, k, A, 2]
        b_in = np.asarray(g[f"{on}/box/energy_in"][...])
        no = ODD[pairs[:, 1]]
        assert np.isnan(e_in[no]).all() and np.isfinite(e_in[~no]).any() and np.isfinite(b_in[no]).any()
    sim = np.asarray(g["transfer/similarity/samples"][...])
    assert sim.size and not ODD[sim].any()
    for label in ("jacobian_svd", "projected_svd"):
        for region in ("eyes", "box"):
            samples = np.asarray(g[f"previews/{region}/{label}/samples"][...])
            assert samples.size and not ODD[samples].any(), (region, label)


def test_summary_report_and_verify_count_the_no_face_samples(finished):
    from lrgan_dist.analysis.summary import summarize
    from lrgan_dist.store.verify import verify_store

    spec, st, _, tmp = finished
    assert summarize(spec, st)["samples"]["no_face"] == {"eyes": 6}
    report = (tmp / "report" / "report.md").read_text()
    assert "eyes: no face: 6" in report
    assert verify_store(st, full=True) == []
