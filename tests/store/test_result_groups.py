"""One result-group rule (issue 12 items 1/4): after a method's parameters change under the
same label, factorize writes ``<label>@<hash8>``, the old group stays, and the population
stage and its consensus read and write the NEW parameters' groups."""
from __future__ import annotations

import numpy as np
import zarr

from lrgan_dist.core.methods import get_method
from lrgan_dist.testing.cli import cli, write_spec

BASE = dict(generator={"kind": "synthetic", "params": {"latent_dim": 24, "resolution": 16, "seed": 0}},
            samples={"count": 8, "seed": 0}, grid={"resolution": 16}, compute={"actors": 1, "jvp_chunk": 16},
            regions={"eyes": {"box": [0.35, 0.28, 0.56, 0.72]}})


def _submit(tmp_path, lam: float, stages: str) -> None:
    job = write_spec(tmp_path / "job.yaml", **BASE,
                     methods={"lrg": {"method": "lowrankgan", "lam": lam, "rank_tol": 0.001, "solver": "ialm"}})
    proc = cli("submit", str(job), "--stages", stages, "--no-progress", "--json", timeout=600)
    assert proc.returncode == 0, proc.stderr


def test_changed_parameters_get_their_own_groups_everywhere(tmp_path):
    from lrgan_dist.pipeline.stages.population import consensus_from_sum, projector_sum

    _submit(tmp_path, 0.25, "jacobians,factorize,population")
    uri = str(tmp_path / "store.zarr")
    old_hash = get_method("lowrankgan", lam=0.25, rank_tol=0.001, solver="ialm").param_hash()
    new_hash = get_method("lowrankgan", lam=0.05, rank_tol=0.001, solver="ialm").param_hash()
    g = zarr.open_group(uri, mode="r", use_consolidated=False)
    old_vectors = np.asarray(g["directions/eyes/lrg/vectors"][...])
    old_pop = np.asarray(g["population/eyes/lrg/vectors"][...])
    assert g["population/eyes/lrg"].attrs["param_hash"] == old_hash

    _submit(tmp_path, 0.05, "factorize")
    _submit(tmp_path, 0.05, "population")
    g = zarr.open_group(uri, mode="r", use_consolidated=False)
    new = f"directions/eyes/lrg@{new_hash[:8]}"
    assert g[new].attrs["param_hash"] == new_hash and (np.asarray(g[f"{new}/status"][...]) == 1).all()
    # the old parameters' groups are untouched
    assert g["directions/eyes/lrg"].attrs["param_hash"] == old_hash
    np.testing.assert_array_equal(np.asarray(g["directions/eyes/lrg/vectors"][...]), old_vectors)
    assert g["population/eyes/lrg"].attrs["param_hash"] == old_hash
    np.testing.assert_array_equal(np.asarray(g["population/eyes/lrg/vectors"][...]), old_pop)
    # population and its consensus: the new parameters, from the new group
    pop = g[f"population/eyes/lrg@{new_hash[:8]}"]
    assert pop.attrs["param_hash"] == new_hash
    assert pop["consensus"].attrs["directions_path"] == new
    V = np.asarray(g[f"{new}/vectors"][...]).astype(np.float64)
    M = np.asarray(g["regions/eyes/gram_in"][...]).astype(np.float64)
    P, used = projector_sum(V, M)
    cv, cs, _ = consensus_from_sum(P, used)
    np.testing.assert_allclose(np.asarray(pop["consensus/spectrum"][...]), cs.astype(np.float32), atol=1e-5)
    Min = np.asarray(pop["gram_in"][...])
    np.testing.assert_allclose(Min, M.mean(axis=0), rtol=1e-6, atol=1e-9)
    assert not np.allclose(np.asarray(pop["vectors"][...]), old_pop)
