"""compute.jacobian: matfree end to end through the CLI (issue 17): a tiny random StyleGAN2 in W+
over all layers (``latent: {space: wplus, layers: all}``, d = num_ws·w_dim) on CPU."""
from __future__ import annotations

import json

import numpy as np
import zarr

from lrgan_dist.testing.cli import cli, write_spec


def test_stylegan2_wplus_all_layers_matfree_cli(tmp_path):
    spec = write_spec(
        tmp_path / "job.yaml",
        generator={"kind": "stylegan2", "params": {"random_init": {
            "z_dim": 16, "w_dim": 16, "img_resolution": 16, "channel_base": 256, "channel_max": 16,
            "mapping_layers": 2, "perturb": 0.1, "seed": 0}}},
        latent={"space": "wplus", "layers": "all"},
        samples={"count": 4, "seed": 0},
        grid={"resolution": 16},
        regions={"centre": {"box": [0.3, 0.3, 0.7, 0.7]}},
        methods={"jacobian_svd": {}, "projected_svd": {}, "lowrankgan": {"lam": 1.0, "rank_tol": 0.001}},
        compute={"actors": 1, "jvp_chunk": 16, "jacobian": "matfree", "k": 6, "oversample": 6,
                 "matfree_tol": 1e-3, "matfree_blocks": 8},
        store={"uri": str(tmp_path / "store.zarr"), "chunk_samples": 2},
    )
    # the dry run counts the matrix-free arrays and 2k direction rows, not d x d Grams or rows
    dry = cli("submit", str(spec), "--dry-run", "--json", timeout=300)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    planned = {a["path"]: a["shape"] for a in json.loads(dry.stdout)["arrays"]}
    assert "regions/centre/gram_in" not in planned and planned["regions/centre/basis_in"] == [4, 6, 96]
    assert planned["regions/centre/union_out"] == [4, 12, 12]
    assert planned["directions/centre/lowrankgan/vectors"] == [4, 12, 96]
    proc = cli("submit", str(spec), "--stages", "jacobians,factorize", timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    g = zarr.open_group(str(tmp_path / "store.zarr"), mode="r")
    d = 6 * 16  # num_ws = 6 at 16², w_dim 16
    assert np.asarray(g["latents"]).shape == (4, d)
    assert (np.asarray(g["status"][:]) == 1).all()
    b = np.asarray(g["regions/centre/basis_in"][:])
    assert b.shape == (4, 6, d)
    gram = b @ b.transpose(0, 2, 1)
    assert np.allclose(gram, np.eye(6), atol=1e-4)  # orthonormal rows
    assert np.asarray(g["regions/centre/eig_out"][:]).shape == (4, 6)
    assert np.asarray(g["regions/centre/union_in"][:]).shape == (4, 12, 12)
    res = np.asarray(g["regions/centre/residual_in"][:])
    assert np.isfinite(res).all() and res.max() <= 1e-3  # certified
    for label in ("jacobian_svd", "projected_svd", "lowrankgan"):
        grp = g[f"directions/centre/{label}"]
        assert (np.asarray(grp["status"][:]) == 1).all(), label
        rank = np.asarray(grp["rank"][:])
        v = np.asarray(grp["vectors"][:])
        # rows of the compressed problem (2k = 12), not d = 96: a W+ store at d = 9 216 holds
        # 2k·d numbers per sample and method instead of d²
        assert v.shape == (4, 12, d) and np.asarray(grp["spectrum"][:]).shape == (4, 12), label
        # lowrankgan may find none: within the 2k-dim union the rest's Gram of a random StyleGAN2 is
        # full rank (no null space); jacobian_svd / projected_svd always have directions here
        assert (rank >= (0 if label == "lowrankgan" else 1)).all(), label
        for i in range(4):
            rows = v[i, : rank[i]]
            assert np.allclose(np.linalg.norm(rows, axis=1), 1, atol=1e-4), label
    print(json.dumps({k: np.asarray(g[f"directions/centre/{k}/rank"][:]).tolist()
                      for k in ("jacobian_svd", "projected_svd", "lowrankgan")}))
    # verify knows the matrix-free layout: the (empty) Gram arrays are not "missing chunks"
    v = cli("inspect", str(tmp_path / "store.zarr"), "--verify", "--json", timeout=300)
    assert v.returncode == 0, v.stdout + v.stderr
    out = json.loads(v.stdout)
    assert out.get("verify", out).get("problems") == []
    # ... and a flipped-to-NaN basis row is found by the full scan
    arr = zarr.open_array(str(tmp_path / "store.zarr" / "regions" / "centre" / "basis_in"), mode="r+")
    arr[1] = np.nan
    v = cli("inspect", str(tmp_path / "store.zarr"), "--verify", "--json", timeout=300)
    assert v.returncode != 0 and "regions/centre/basis_in[1]" in v.stdout, v.stdout
    arr[1] = b[1]
    # the stages that read per-sample Grams are skipped with a note, not run on empty Grams
    proc = cli("submit", str(spec), "--no-progress", "--json", timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    stages = json.loads(proc.stdout)["stages"]
    for name in ("population", "transfer", "previews"):
        assert "matfree" in stages[name]["skipped"], stages
