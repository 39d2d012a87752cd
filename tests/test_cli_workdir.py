"""The CLI works from a researcher's working directory: a local ``analysis.py`` (a common
file name) must not shadow the report library, which is ``lrgan_dist.analysis``."""
from __future__ import annotations

import os
import subprocess
import sys

from lrgan_dist.testing.stores import build_study_store


def test_report_with_analysis_py_in_working_directory(tmp_path_factory):
    _, uri, _ = build_study_store(tmp_path_factory.getbasetemp())
    work = tmp_path_factory.mktemp("researcher")
    (work / "analysis.py").write_text("raise SystemExit('the local analysis.py was imported')\n")
    (work / "analysis").mkdir()  # a data folder of that name too
    env = dict(os.environ, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run([sys.executable, "-m", "lrgan_dist", "report", uri, "--out", str(work / "rep")],
                          cwd=work, capture_output=True, text=True, timeout=600, env=env, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (work / "rep" / "report.md").is_file()
    assert "local analysis.py" not in proc.stdout + proc.stderr


def test_loading_a_store_into_pandas_does_not_import_torch():
    code = ("import sys\nimport lrgan_dist.analysis.loaders\n"
            "print('torch' in sys.modules, 'ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.split() == ["False", "False"], out.stdout
