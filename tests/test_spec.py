"""Job spec parsing: typed, validated, resolved, fingerprinted."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lrgan_dist.spec import JobSpec, SpecError, load_spec, parse_spec

ROOT = Path(__file__).resolve().parents[1]
MIN = {"regions": {"eyes": {"box": [0.3, 0.2, 0.5, 0.8]}}}


def test_quickstart_parses_and_resolves():
    spec = load_spec(ROOT / "jobs" / "quickstart.yaml")
    assert isinstance(spec, JobSpec)
    assert spec.generator.kind == "synthetic"
    assert [r.name for r in spec.regions][:2] == ["eyes", "mouth"]
    d = spec.to_dict()
    assert d["compute"]["jvp_chunk"] == 16 and "base_dir" not in d
    assert len(spec.data_fingerprint()) == 64


def test_defaults_filled():
    spec = parse_spec(MIN)
    assert spec.samples.count == 64 and spec.grid.channels == "mean"
    assert [m.label for m in spec.methods] == ["lowrankgan", "resefa", "jacobian_svd"]
    assert spec.store.chunk_samples == 16


def test_frozen():
    spec = parse_spec(MIN)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.samples.count = 3  # type: ignore[misc]


def test_fingerprint_stable_and_sensitive():
    a = parse_spec(MIN).data_fingerprint()
    assert a == parse_spec(dict(MIN)).data_fingerprint()
    assert a != parse_spec({**MIN, "samples": {"seed": 1}}).data_fingerprint()
    assert a != parse_spec({"regions": {"eyes": {"box": [0.3, 0.2, 0.5, 0.81]}}}).data_fingerprint()
    # methods are not part of the data fingerprint: re-factorizing keeps the store
    assert a == parse_spec({**MIN, "methods": {"resefa": {}}}).data_fingerprint()


@pytest.mark.parametrize(
    "raw, field, fragment",
    [
        ({**MIN, "sampels": {}}, "sampels", "did you mean 'samples'"),
        ({**MIN, "samples": {"cout": 3}}, "samples.cout", "did you mean 'count'"),
        ({**MIN, "samples": {"count": "many"}}, "samples.count", "expected an integer"),
        ({**MIN, "samples": {"count": 0}}, "samples.count", "[1, 10000000]"),
        ({**MIN, "grid": {"channels": "rbg"}}, "grid.channels", "did you mean 'rgb'"),
        ({**MIN, "generator": {"kind": "stylegan9"}}, "generator.kind", "expected one of"),
        ({**MIN, "methods": {"lowrankgn": {}}}, "methods.lowrankgn", "did you mean 'lowrankgan'"),
        ({"regions": {"eyes": {"box": [0.5, 0.2, 0.3, 0.8]}}}, "regions.eyes.box", "y1 > y0"),
        ({"regions": {"eyes": {"box": [0.3, 0.2, 0.5]}}}, "regions.eyes.box", "expected 4 values"),
        ({"regions": {"eyes": {"box": [0.3, 0.2, 0.5, 1.8]}}}, "regions.eyes.box", "normalized"),
        ({"regions": {"eyes": {}}}, "regions.eyes", "exactly one of"),
        ({"regions": {}}, "regions", "at least one region"),
        ({**MIN, "samples": {"count": 4}, "transfer": {"sources": 8}}, "transfer.sources", "at most 4"),
        ({**MIN, "compute": {"batch_size": 32}, "store": {"chunk_samples": 8}}, "compute.batch_size", "chunk_samples"),
        ({**MIN, "regions": {"eyes": {"preset": "ffhq:eyez"}}}, "regions.eyes.preset", "did you mean 'ffhq:eyes'"),
    ],
)
def test_bad_specs_name_the_field(raw, field, fragment):
    with pytest.raises(SpecError) as info:
        parse_spec(raw)
    assert info.value.field == field
    assert fragment in str(info.value)


def test_lambda_fraction():
    spec = parse_spec({**MIN, "methods": {"lowrankgan": {"lam": "1/60"}}})
    assert spec.methods[0].params["lam"] == pytest.approx(1 / 60)


def test_malformed_yaml_reports_line_and_column(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("regions:\n  eyes: {box: [0.1, 0.2\n")
    with pytest.raises(SpecError) as info:
        load_spec(p)
    assert "line" in str(info.value) and "column" in str(info.value) and "bad.yaml" in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(SpecError, match="does not exist"):
        load_spec(tmp_path / "nope.yaml")


@settings(max_examples=40, deadline=None)
@given(count=st.integers(min_value=1, max_value=10_000), seed=st.integers(min_value=0, max_value=2**31),
       chunk=st.integers(min_value=1, max_value=64))
def test_valid_numbers_roundtrip(count, seed, chunk):
    spec = parse_spec({**MIN, "samples": {"count": count, "seed": seed}, "store": {"chunk_samples": chunk},
                       "transfer": {"sources": 1}})
    again = parse_spec(spec.to_dict())
    assert again.data_fingerprint() == spec.data_fingerprint()
    assert again.samples.count == count


@settings(max_examples=40, deadline=None)
@given(value=st.one_of(st.text(max_size=5), st.floats(allow_nan=True), st.lists(st.integers(), max_size=3)))
def test_bad_count_types_always_spec_error(value):
    try:
        parse_spec({**MIN, "samples": {"count": value}})
    except SpecError as exc:
        assert exc.field == "samples.count"
    else:  # only integers >= 1 are accepted
        assert isinstance(value, int) and value >= 1
