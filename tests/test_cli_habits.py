"""CLI and API habits (issue 15.5): all spec errors at once, part names, --version, -h, API."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from lrgan_dist.spec import SpecError, SpecErrors, parse_spec
from lrgan_dist.testing.cli import ROOT, cli


def test_three_errors_reported_at_once(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump({
        "samples": {"count": 0},
        "regions": {"eyes": {"box": [0.3, 0.2]}},
        "compute": {"jvp_chunk": 0},
    }))
    proc = cli("validate", str(p))
    assert proc.returncode == 2
    err = proc.stderr
    assert "3 errors" in err
    for field in ("samples.count", "regions.eyes.box", "compute.jvp_chunk"):
        assert field in err, err
    with pytest.raises(SpecErrors) as e:
        parse_spec(yaml.safe_load(p.read_text()))
    assert [x.field for x in e.value.errors] == ["samples.count", "regions.eyes.box", "compute.jvp_chunk"]
    assert isinstance(e.value, SpecError)


def test_one_error_reads_as_before():
    with pytest.raises(SpecError) as e:
        parse_spec({"regions": {"eyes": {"box": [0.3, 0.2, 0.5, 0.8]}}, "samples": {"count": 0}})
    msg = str(e.value)
    assert msg.startswith("samples.count: received 0; expected an integer") and "\n" not in msg
    assert "errors in the job spec" not in msg


@pytest.mark.parametrize("part, ok", [("eyes", True), ("mouth", True), ("hair", True), ("lighting", False),
                                      ("layout", False), ("nose", False)])
def test_synthetic_part_names_checked_at_validate(part, ok):
    raw = {"regions": {"r": {"part": part}}}
    if ok:
        assert parse_spec(raw).regions[0].part == part
    else:
        with pytest.raises(SpecError) as e:
            parse_spec(raw)
        assert e.value.field == "regions.r.part" and "'eyes'" in str(e.value)


def test_part_refused_for_generators_without_masks():
    raw = yaml.safe_load((ROOT / "jobs" / "stylegan2_tiny_random.yaml").read_text())
    raw["regions"] = {"r": {"part": "eyes"}}
    with pytest.raises(SpecError) as e:
        parse_spec(raw)
    assert e.value.field == "regions.r.part" and "no ground-truth part masks" in str(e.value)


def test_version_and_short_help():
    import lrgan_dist

    proc = cli("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"lrgan-dist {lrgan_dist.__version__}"
    proc = cli("-h")
    assert proc.returncode == 0 and "submit" in proc.stdout
    proc = cli("submit", "-h")
    assert proc.returncode == 0 and "--dry-run" in proc.stdout and "http://" in proc.stdout
    proc = cli("--help")
    assert proc.returncode == 0 and "--install-completion" in proc.stdout


def test_import_is_light_and_api_is_documented():
    code = ("import sys, lrgan_dist; "
            "heavy = [m for m in ('ray', 'zarr', 'torch', 'pandas') if m in sys.modules]; "
            "print(heavy, lrgan_dist.__version__, sorted(lrgan_dist.__all__))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith("[]"), out
    import lrgan_dist

    for name in ("open_store", "load_directions", "load_transfer", "submit", "validate", "load_spec", "export_reference"):
        assert name in lrgan_dist.__all__
        obj = getattr(lrgan_dist, name)
        assert callable(obj) and obj.__doc__, name
    assert (ROOT / "lrgan_dist" / "py.typed").exists()
    spec = lrgan_dist.validate(ROOT / "jobs" / "quickstart.yaml")
    assert spec.samples.count == 64
    with pytest.raises(AttributeError):
        lrgan_dist.no_such_thing  # noqa: B018


def test_dry_run_writes_nothing(tmp_path):
    store = tmp_path / "never.zarr"
    proc = cli("submit", str(ROOT / "jobs" / "quickstart.yaml"), "--dry-run", "--json", "--store", str(store))
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    assert r["dry_run"] and r["samples"] == 64 and r["units"]["jacobians"] == 8
    assert r["actors"] >= 1 and set(r["resources_per_actor"]) == {"CPU", "GPU", "torch_threads"}
    by = {a["path"]: a for a in r["arrays"]}
    assert by["latents"]["bytes"] == 64 * 64 * 4
    # dense Grams: d direction rows per sample (the layout's free symbol r bound to d)
    assert by["directions/eyes/lowrankgan/vectors"]["shape"] == [64, 64, 64]
    assert by["regions/eyes/gram_in"]["shape"] == [64, 64, 64] and "regions/eyes/basis_in" not in by
    assert r["store_bytes"] == sum(a["bytes"] for a in r["arrays"]) > 0
    assert not store.exists()
    proc = cli("submit", str(ROOT / "jobs" / "quickstart.yaml"), "--dry-run", "--store", str(store))
    assert proc.returncode == 0 and "nothing written" in proc.stdout and not store.exists()


def test_quiet_verbose_accepted():
    import logging

    from typer.testing import CliRunner

    from lrgan_dist.cli import app

    job = str(ROOT / "jobs" / "quickstart.yaml")
    assert cli("-q", "validate", job).returncode == 0
    assert cli("-vv", "validate", job).returncode == 0
    for flags, level in ((["-q"], logging.WARNING), ([], logging.INFO), (["-v"], logging.DEBUG)):
        assert CliRunner().invoke(app, [*flags, "validate", job]).exit_code == 0
        assert logging.getLogger("lrgan_dist").level == level
