"""Stores explain themselves (issue 15): xarray opens a finished store as a DataTree in
a process that never imports lrgan_dist, and reads arrays by name with their attributes."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lrgan_dist.testing.stores import build_study_store

pytest.importorskip("xarray")

CODE = r"""
import json, sys, warnings
warnings.simplefilter("ignore")
import xarray as xr
dt = xr.open_datatree(sys.argv[1], engine="zarr", consolidated=True)
out = {
    "latents": [list(dt["latents"].dims), list(dt["latents"].shape)],
    "gram_in": list(dt["regions/eyes/gram_in"].dims),
    "vectors": list(dt["directions/eyes/lowrankgan/vectors"].shape),
    "done": int((dt["status"].values == 1).sum()),
    "status_attrs": dict(dt["status"].attrs),
    "described": all("description" in dt[p].attrs for p in ("latents", "images", "status", "regions/eyes/gram_in",
                                                             "directions/eyes/lowrankgan/vectors")),
    "imported": any(m == "lrgan_dist" or m.startswith("lrgan_dist.") for m in sys.modules),
}
print(json.dumps(out))
"""


def test_open_datatree_without_lrgan_dist(tmp_path_factory):
    spec, uri, _ = build_study_store(tmp_path_factory.getbasetemp())
    proc = subprocess.run([sys.executable, "-c", CODE, uri], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path_factory.mktemp("xr"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    n, d = spec.samples.count, 64
    assert out["latents"] == [["sample", "latent"], [n, d]]
    assert out["gram_in"] == ["sample", "latent_i", "latent_j"]
    assert out["vectors"][0] == n and out["done"] == n
    assert out["status_attrs"]["flag_values"] == [0, 1, 2]
    assert out["status_attrs"]["flag_meanings"] == "pending done failed"
    assert out["described"] and not out["imported"]
