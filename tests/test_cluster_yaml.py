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
