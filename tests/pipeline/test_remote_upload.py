"""Remote submission hygiene (issue 14, defect 8): the uploaded working directory leaves
out dotfiles, stores and weights; a token over plain http and an excluded checkpoint the
spec names draw warnings. Checked with a recording client, no cluster needed."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from lrgan_dist.pipeline import remote


class Recorder:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def submit_job(self, **kw: Any) -> str:
        self.calls.append(kw)
        return "raysubmit_test"


def _home_like(tmp: Path) -> Path:
    (tmp / ".ssh").mkdir()
    (tmp / ".ssh" / "id_rsa").write_text("PRIVATE")
    (tmp / ".aws").mkdir()
    (tmp / ".aws" / "credentials").write_text("SECRET")
    (tmp / "runs" / "old.zarr").mkdir(parents=True)
    (tmp / "g.pkl").write_bytes(b"weights")
    spec = tmp / "job.yaml"
    spec.write_text(yaml.safe_dump({"generator": {"kind": "stylegan2", "params": {"checkpoint": "g.pkl"}},
                                    "regions": {"eyes": {"box": [0.3, 0.2, 0.5, 0.8]}}}))
    return spec


def test_uploads_exclude_dotfiles_stores_and_weights(tmp_path, monkeypatch, capsys):
    spec = _home_like(tmp_path)
    rec = Recorder()
    monkeypatch.setattr(remote, "_client", lambda address: rec)
    monkeypatch.setenv("RAY_AUTH_TOKEN", "t0k3n")
    remote.submit_job(spec, "http://10.1.2.3:8265", ["--json"], ship_code=False)
    env = rec.calls[0]["runtime_env"]
    assert env["working_dir"] == str(tmp_path)
    for rel in (".ssh/id_rsa", ".aws/credentials", "runs/old.zarr", "g.pkl", "store.zarr.lease"):
        assert remote._excluded(rel), rel
    assert not remote._excluded("job.yaml") and not remote._excluded("masks/eyes.npy")
    assert set(env["excludes"]) == set(remote.UPLOAD_EXCLUDES)
    # Ray matches the patterns (gitwildmatch) against paths relative to the working dir,
    # the folder itself included as "."; it must not be excluded
    pathspec = __import__("pathspec")
    spec = pathspec.PathSpec.from_lines("gitwildmatch", env["excludes"])
    assert not spec.match_file(".") and not spec.match_file("job.yaml") and not spec.match_file("masks/eyes.npy")
    assert spec.match_file(".ssh/id_rsa") and spec.match_file("runs/old.zarr/zarr.json") and spec.match_file("g.pkl")
    err = capsys.readouterr().err
    assert "'g.pkl' next to the spec is not uploaded" in err
    assert "over plain http" in err and "10.1.2.3" in err


def test_no_token_warning_for_loopback_or_https(tmp_path, monkeypatch):
    spec = tmp_path / "job.yaml"
    spec.write_text("regions: {eyes: {box: [0.3, 0.2, 0.5, 0.8]}}\n")
    monkeypatch.setenv("RAY_AUTH_TOKEN", "t0k3n")
    assert remote.upload_warnings(spec, "http://127.0.0.1:8265") == []
    assert remote.upload_warnings(spec, "https://head.example:8265") == []
