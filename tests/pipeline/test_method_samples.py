"""``methods.<label>.samples``: a per-sample method factorizes only the first N samples of a job
(e.g. a λ sweep on a subset of a large job; issue 13's performance goal)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import zarr

from lrgan_dist.core.methods import get_method
from lrgan_dist.spec import SpecError, parse_spec
from lrgan_dist.testing.cli import cli, write_spec

BASE = {
    "generator": {"kind": "synthetic", "params": {"latent_dim": 32, "resolution": 16, "seed": 0}},
    "samples": {"count": 10, "seed": 0},
    "grid": {"resolution": 16},
    "regions": {"eyes": {"part": "eyes"}},
}


def _spec(methods):
    return parse_spec({**BASE, "methods": methods})


def test_samples_key_parsed_and_kept_out_of_the_parameter_hash():
    spec = _spec({"lowrankgan": {"lam": [0.1, 0.3], "samples": 4}, "resefa": {}})
    by = {m.label: m for m in spec.methods}
    assert by["lowrankgan_lam0.1"].samples == 4 and by["lowrankgan_lam0.3"].samples == 4
    assert by["resefa"].samples is None and by["resefa"].sample_limit(10) == 10
    assert by["lowrankgan_lam0.1"].sample_limit(10) == 4 and by["lowrankgan_lam0.1"].sample_limit(3) == 3
    # not a method parameter: the same parameters and hash as the entry without it
    assert dict(by["lowrankgan_lam0.1"].params) == {"lam": 0.1}
    assert get_method("lowrankgan", **by["lowrankgan_lam0.1"].params).param_hash() == \
        get_method("lowrankgan", lam=0.1).param_hash()
    # the stored spec round-trips
    again = parse_spec(spec.to_dict())
    assert [(m.label, m.samples) for m in again.methods] == [(m.label, m.samples) for m in spec.methods]


@pytest.mark.parametrize("bad", [0, -3, 2.5, "64", True, [4, 8]])
def test_samples_key_rejected_with_the_field_named(bad):
    with pytest.raises(SpecError) as e:
        _spec({"lowrankgan": {"samples": bad}})
    assert "methods.lowrankgan.samples" in str(e.value) and "integer >= 1" in str(e.value)


def test_samples_key_refused_for_a_population_only_method():
    with pytest.raises(SpecError) as e:
        _spec({"ganspace": {"samples": 4}})
    assert "methods.ganspace.samples" in str(e.value)


@pytest.mark.slow
def test_subset_methods_end_to_end(tmp_path):
    """Limits 6 (inside the chunk [4, 8)) and 3 beside the full groups: the first N samples are
    done with the very vectors of the full group, the rest stay pending (not failed), a
    resubmission has nothing to do, raising the limit computes only the new samples, and
    the population stage and ``inspect --verify`` accept the partly-filled groups."""
    store = tmp_path / "s.zarr"
    methods = {"jacobian_svd": {}, "jsvd6": {"method": "jacobian_svd", "samples": 6},
               "lowrankgan": {"solver": "ialm", "lam": 0.25},
               "lrg3": {"method": "lowrankgan", "solver": "ialm", "lam": 0.25, "samples": 3}}
    job = write_spec(tmp_path / "job.yaml", **BASE, methods=methods, compute={"actors": 1, "jvp_chunk": 16},
                     store={"uri": str(store), "chunk_samples": 4})
    proc = cli("submit", str(job), "--stages", "jacobians,factorize,population", "--no-progress", "--json",
               timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    g = zarr.open_group(str(store), mode="r")
    for full, sub, n in (("jacobian_svd", "jsvd6", 6), ("lowrankgan", "lrg3", 3)):
        fs = np.asarray(g[f"directions/eyes/{full}/status"][:])
        ss = np.asarray(g[f"directions/eyes/{sub}/status"][:])
        assert (fs == 1).all() and (ss[:n] == 1).all() and (ss[n:] == 0).all(), (sub, ss)
        fv = np.asarray(g[f"directions/eyes/{full}/vectors"][:n])
        sv = np.asarray(g[f"directions/eyes/{sub}/vectors"][:n])
        assert np.array_equal(np.isnan(fv), np.isnan(sv)) and np.array_equal(np.nan_to_num(fv), np.nan_to_num(sv)), sub
        assert np.array_equal(np.asarray(g[f"directions/eyes/{full}/rank"][:n]),
                              np.asarray(g[f"directions/eyes/{sub}/rank"][:n]))
        assert (np.asarray(g[f"directions/eyes/{sub}/rank"][n:]) == -1).all()
        assert np.isnan(np.asarray(g[f"directions/eyes/{sub}/vectors"][n:])).all()
    assert "population/eyes/jsvd6/vectors" in g and "population/eyes/lrg3/vectors" in g
    v = cli("inspect", str(store), "--verify", "--json", timeout=300)
    out = json.loads(v.stdout)
    assert v.returncode == 0 and out.get("verify", out).get("problems") == [], v.stdout
    # resubmitting: nothing pending within the limits
    proc = cli("submit", str(job), "--stages", "factorize", "--no-progress", "--json", timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["stages"]["factorize"]["units"] == 0
    # raising a limit computes the new samples only: the first 6 are not rewritten
    before = np.asarray(g["directions/eyes/jsvd6/vectors"][:6])
    methods["jsvd6"]["samples"] = 9
    write_spec(tmp_path / "job.yaml", **BASE, methods=methods, compute={"actors": 1, "jvp_chunk": 16},
               store={"uri": str(store), "chunk_samples": 4})
    proc = cli("submit", str(job), "--stages", "factorize", "--no-progress", "--json", timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["stages"]["factorize"]["units"] == 2  # chunks [4, 8) and [8, 10)
    ss = np.asarray(g["directions/eyes/jsvd6/status"][:])
    assert (ss[:9] == 1).all() and ss[9] == 0
    after = np.asarray(g["directions/eyes/jsvd6/vectors"][:])
    assert np.array_equal(np.nan_to_num(after[:6]), np.nan_to_num(before))
    full = np.asarray(g["directions/eyes/jacobian_svd/vectors"][:9])
    assert np.array_equal(np.nan_to_num(after[:9]), np.nan_to_num(full))
