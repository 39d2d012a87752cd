"""The layout table, checksums and the integrity scans (issue 12 item 1/3, issue 14 items 2-4).

Stores are built without Ray (the stage classes are plain), 8 samples of the synthetic
generator, chunks of 4.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import zarr

from lrgan_dist.spec import load_spec
from lrgan_dist.store.layout import DONE, PENDING, TABLE, spec_for
from lrgan_dist.store.verify import refuse_if_damaged, repair_for_resume, verify_store
from lrgan_dist.store.zarrstore import Store, StoreError, remove_store
from lrgan_dist.testing.cli import cli, write_spec

SMALL = dict(generator={"kind": "synthetic", "params": {"latent_dim": 24, "resolution": 16, "seed": 0}},
             samples={"count": 8, "seed": 0}, grid={"resolution": 16}, compute={"actors": 1, "jvp_chunk": 16},
             methods={"lowrankgan": {"lam": 0.25, "rank_tol": 0.001, "solver": "ialm"}, "jacobian_svd": {}})


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(job.yaml, store path) of a finished jacobians + factorize store."""
    from lrgan_dist.pipeline.scheduler import prepare_store
    from lrgan_dist.pipeline.stages.factorize import factorize_unit, result_groups
    from lrgan_dist.pipeline.stages.jacobians import JacobianWorker

    base = tmp_path_factory.mktemp("built")
    job = write_spec(base / "job.yaml", **SMALL)
    spec = load_spec(str(job))
    store = prepare_store(spec)
    worker = JacobianWorker(spec, store.uri, 1)
    for u in store.layout.chunks():
        worker.run(u)
    groups = result_groups(spec, store)
    for u in store.layout.chunks():
        factorize_unit(spec, store.uri, u, groups, 1)
    return job, Path(store.uri)


def _copy(built, tmp_path) -> Path:
    dst = tmp_path / "s.zarr"
    shutil.copytree(built[1], dst)
    return dst


def _arrays(g: zarr.Group, prefix: str = "") -> list[str]:
    out = [f"{prefix}{k}" for k, _ in g.arrays()]
    for k, sub in g.groups():
        out += _arrays(sub, f"{prefix}{k}/")
    return out


def test_every_created_array_is_a_table_row_with_dims_attrs_and_crc(built):
    st = Store.open(str(built[1]))
    assert st.format == 2
    paths = _arrays(st.group)
    assert "images" in paths and "directions/eyes/lowrankgan/vectors" in paths
    for p in paths:
        row = spec_for(p, st.layout)
        assert row is not None, p
        arr = st.group[p]
        assert arr.attrs["description"] == row[0].description
        assert "Crc32cCodec" in [type(c).__name__ for c in arr.compressors], p
        if arr.ndim:
            assert len(arr.metadata.dimension_names) == arr.ndim
    assert st.group["images"].metadata.dimension_names == ("sample", "preview_row", "preview_col", "rgb")
    assert st.group["status"].attrs["flag_values"] == [0, 1, 2]
    assert st.group["status"].attrs["flag_meanings"] == "pending done failed"
    assert verify_store(st, full=False) == [] and verify_store(st, full=True) == []


def test_table_names_one_meaning_per_dimension():
    """A dimension name means one axis: the same name never takes two different symbols."""
    seen: dict[str, object] = {}
    for row in TABLE.values():
        for dim, sym in zip(row.dims, row.shape):
            if dim == "*tail":
                continue
            assert seen.setdefault(dim, sym) == sym, (row.kind, dim, sym, seen[dim])


def test_consolidated_metadata_opens_without_our_code(built, tmp_path):
    s = _copy(built, tmp_path)
    Store.open(str(s), mode="a").consolidate()
    g = zarr.open_group(str(s), mode="r", use_consolidated=True)
    assert g.metadata.consolidated_metadata is not None
    assert "regions/eyes/gram_in" in g.metadata.consolidated_metadata.flattened_metadata
    # our own readers ignore it: a later array is visible to Store
    st = Store.open(str(s), mode="a")
    st.create_array("population/eyes/x/rank", ())
    assert "population/eyes/x/rank" in Store.open(str(s)).group


def test_corrupt_array_metadata_is_listed_not_a_crash(built, tmp_path):
    s = _copy(built, tmp_path)
    (s / "latents" / "zarr.json").write_text("{ not json")
    (s / "directions" / "eyes" / "jacobian_svd" / "rank" / "zarr.json").write_text("[]")
    st = Store.open(str(s))
    for full in (False, True):
        problems = verify_store(st, full=full)
        assert any(p.startswith("latents/zarr.json: array metadata unreadable (JSONDecodeError") for p in problems)
        assert any(p.startswith("directions/eyes/jacobian_svd/rank/zarr.json: array metadata unreadable")
                   for p in problems)
    done = repair_for_resume(Store.open(str(s), mode="a"))
    assert "latents: array missing or misshapen; recreated, every sample recomputed" in done
    assert "directions/eyes/jacobian_svd: result arrays missing; group removed, refactorized" in done
    assert (Store.open(str(s)).status() == PENDING).all()


def test_edited_fill_value_is_reported(built, tmp_path):
    s = _copy(built, tmp_path)
    meta = s / "regions" / "eyes" / "gram_in" / "zarr.json"
    doc = json.loads(meta.read_text())
    doc["fill_value"] = 0.0  # JSON-valid edit: missing chunks would read as zero Grams
    meta.write_text(json.dumps(doc))
    problems = verify_store(Store.open(str(s)), full=False)
    assert problems == ["regions/eyes/gram_in/zarr.json: fill_value 0.0, expected nan (layout table row 'gram_in')"]
    with pytest.raises(StoreError, match="regions/eyes/gram_in"):
        refuse_if_damaged(Store.open(str(s)), "factorize")
    repair_for_resume(Store.open(str(s), mode="a"))  # recreated from the table
    assert verify_store(Store.open(str(s)), full=False) == []


def test_wrong_dtype_and_shape_are_reported(built, tmp_path):
    s = _copy(built, tmp_path)
    meta = s / "latents" / "zarr.json"
    doc = json.loads(meta.read_text())
    doc["data_type"] = "float64"
    meta.write_text(json.dumps(doc))
    meta = s / "images" / "zarr.json"
    doc = json.loads(meta.read_text())
    doc["shape"] = [9, 16, 16, 3]
    meta.write_text(json.dumps(doc))
    problems = verify_store(Store.open(str(s)), full=True)
    assert "latents/zarr.json: data_type 'float64', expected 'float32' (layout table row 'latents')" in problems
    assert any(p.startswith("images: received shape [9, 16, 16, 3]") for p in problems)


def test_status_outside_the_codes_is_reported_and_recomputed(built, tmp_path):
    s = _copy(built, tmp_path)
    st = Store.open(str(s), mode="a")
    st.group["status"][5] = 7
    st.group["directions/eyes/lowrankgan/status"][1] = 9
    st = Store.open(str(s), mode="a")
    assert st.counts() == {"pending": 1, "done": 7, "failed": 0}  # not "done" any more
    assert st.pending_units() == [(4, 8)]
    problems = verify_store(st, full=False)
    assert ("status: 1 value(s) outside the status codes ([5] = 7); expected 0 (pending), 1 (done), 2 (failed); "
            "read as pending and recomputed") in problems
    assert any(p.startswith("directions/eyes/lowrankgan/status: 1 value(s) outside") for p in problems)
    repair_for_resume(st)
    assert st.status(raw=True).tolist() == [DONE] * 4 + [PENDING] * 4
    fst = st.status("directions/eyes/lowrankgan/status", raw=True)
    assert fst.tolist() == [PENDING] * 8  # chunk 0 invalid, chunk 1 recomputed upstream


def test_flipped_byte_fails_its_checksum_in_the_full_scan(built, tmp_path):
    s = _copy(built, tmp_path)
    chunk = s / "regions" / "eyes" / "gram_in" / "c" / "1" / "0" / "0"
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0x01
    chunk.write_bytes(bytes(data))
    st = Store.open(str(s))
    assert verify_store(st, full=False) == []  # the cheap scan decodes nothing
    problems = verify_store(st, full=True, threads=4)
    assert len(problems) == 1 and problems[0].startswith("regions/eyes/gram_in[4:8]: chunk unreadable (ValueError: "
                                                         "Stored and computed checksum do not match")
    assert repair_for_resume(Store.open(str(s), mode="a"), full=True)[0].endswith("samples 4-7 recomputed")


def test_cheap_scan_finds_missing_and_empty_chunks_from_the_listing(built, tmp_path):
    s = _copy(built, tmp_path)
    (s / "latents" / "c" / "0" / "0").unlink()
    (s / "regions" / "eyes" / "gram_out" / "c" / "1" / "0" / "0").write_bytes(b"")
    (s / "directions" / "eyes" / "jacobian_svd" / "rank" / "c" / "1").unlink()
    problems = verify_store(Store.open(str(s)), full=False)
    assert problems == [
        "latents[0:4]: chunk missing for samples marked done (deleted chunk file?)",
        "regions/eyes/gram_out[4:8]: chunk file empty (0 bytes); truncated chunk file",
        "directions/eyes/jacobian_svd/rank[4:8]: chunk missing for samples marked done (deleted or truncated chunk file?)",
    ]


def test_a_store_of_the_previous_layout_opens_and_verifies(built, tmp_path):
    """Format 1 (before the table): no store_format, no dimension-name contract, no crc32c."""
    s = _copy(built, tmp_path)
    g = zarr.open_group(str(s), mode="r+", use_consolidated=False)
    for p in _arrays(g):
        old = g[p]
        data = old[...]
        parent, _, name = p.rpartition("/")
        grp = g[parent] if parent else g
        kw = {} if old.dtype.kind == "T" or str(old.dtype) == "StringDType()" else {"fill_value": old.fill_value}
        new = grp.create_array(name, shape=old.shape, chunks=old.chunks, dtype=old.dtype, overwrite=True,
                               dimension_names=("sample",) * old.ndim if old.ndim else None, **kw)
        new[...] = data
    del g.attrs["store_format"]
    st = Store.open(str(s), mode="a")
    assert st.format == 1
    assert verify_store(st, full=True) == []
    assert repair_for_resume(st) == []


def test_fresh_refuses_a_foreign_directory(tmp_path):
    foreign = tmp_path / "thesis"
    foreign.mkdir()
    (foreign / "chapter1.tex").write_text("precious")
    with pytest.raises(StoreError) as err:
        remove_store(str(foreign))
    assert "not an lrgan-dist store" in str(err.value) and "--fresh" not in str(err.value)
    assert (foreign / "chapter1.tex").read_text() == "precious"


def test_submit_fresh_leaves_a_foreign_directory_alone(tmp_path):
    foreign = tmp_path / "data"
    (foreign / "sub").mkdir(parents=True)
    (foreign / "sub" / "keep.txt").write_text("x")
    job = write_spec(tmp_path / "job.yaml", **SMALL)
    proc = cli("submit", str(job), "--store", str(foreign), "--fresh", "--no-progress", timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "not an lrgan-dist store" in proc.stderr and "--fresh" not in proc.stderr.split("error:")[-1]
    assert (foreign / "sub" / "keep.txt").read_text() == "x"
