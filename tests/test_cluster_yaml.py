"""cluster.yaml passes Ray's own cluster-launcher schema validation."""
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_cluster_yaml_validates_with_ray_schema():
    from ray.autoscaler._private.util import validate_config

    cfg = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    validate_config(cfg)  # raises on schema violations
    types = cfg["available_node_types"]
    assert cfg["head_node_type"] in types
    gpu = [t for t in types.values() if t.get("max_workers", 0) > 0]
    assert gpu and all(t["min_workers"] <= t["max_workers"] for t in gpu)
    assert any("lrgan-dist" in c for c in cfg["setup_commands"])
    assert any("jobs" in k for k in cfg["file_mounts"])


def test_schema_rejects_a_broken_config():
    from ray.autoscaler._private.util import validate_config

    cfg = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    cfg["available_node_types"]["gpu_worker"]["min_workers"] = "lots"
    with pytest.raises(Exception):
        validate_config(cfg)


def _ray_schema() -> dict:
    import json
    import os

    import ray

    return json.loads(Path(os.path.dirname(ray.__file__), "autoscaler", "ray-schema.json").read_text())


def test_cluster_yaml_validates_with_jsonschema_and_gives_workers_s3():
    jsonschema = pytest.importorskip("jsonschema")
    cfg = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    jsonschema.validate(cfg, _ray_schema())
    for name, t in cfg["available_node_types"].items():
        prof = t["node_config"].get("IamInstanceProfile")
        assert prof and (prof.get("Name") or prof.get("Arn")), f"{name}: no IAM instance profile (S3 stores)"
    setup = " ".join(cfg["setup_commands"])
    assert '"torch==2.13.0"' in setup and '"ray[default]==2.60.0"' in setup  # pinned, not floating
    bad = dict(cfg, provider={**cfg["provider"], "type": 7})
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, _ray_schema())


def _containers(template: dict) -> list[dict]:
    return template["spec"]["containers"]


def test_kuberay_rayjob_has_what_the_operator_requires():
    docs = list(yaml.safe_load_all((ROOT / "deploy" / "kuberay" / "rayjob.yaml").read_text()))
    assert len(docs) == 1
    job = docs[0]
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    assert job["metadata"]["name"]
    spec = job["spec"]
    entry = spec["entrypoint"]
    assert isinstance(entry, str) and entry.startswith("lrgan-dist submit ") and "--address auto" in entry
    assert "s3://" in entry  # a store every pod can reach
    rc = spec["rayClusterSpec"]
    assert rc["rayVersion"] == "2.60.0"
    head = rc["headGroupSpec"]
    assert isinstance(head["rayStartParams"], dict)
    hc = _containers(head["template"])
    assert hc and all(c.get("name") and c.get("image") for c in hc)
    assert any(p["containerPort"] == 8265 for c in hc for p in c.get("ports", []))
    workers = rc["workerGroupSpecs"]
    assert workers
    for g in workers:
        assert g["groupName"] and isinstance(g["rayStartParams"], dict)
        assert 0 <= g["minReplicas"] <= g["replicas"] <= g["maxReplicas"]
        wc = _containers(g["template"])
        assert wc and all(c.get("name") and c.get("image") for c in wc)
        assert any("nvidia.com/gpu" in c["resources"]["limits"] for c in wc)
        assert g["template"]["spec"].get("serviceAccountName")  # S3 credentials on the workers
    images = {c["image"] for c in hc} | {c["image"] for g in workers for c in _containers(g["template"])}
    assert len(images) == 1 and "2.60.0" in images.pop()  # one pinned image for head and workers
    # every volume a container mounts exists in its pod
    for tpl in [head["template"]] + [g["template"] for g in workers]:
        vols = {v["name"] for v in tpl["spec"].get("volumes", [])}
        assert {m["name"] for c in _containers(tpl) for m in c.get("volumeMounts", [])} <= vols
    dockerfile = (ROOT / "deploy" / "kuberay" / "Dockerfile").read_text()
    assert "rayproject/ray:2.60.0" in dockerfile and "torch==2.13.0" in dockerfile
