"""The README's two set-up commands and CI's test command stay in step."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _bash_blocks(text: str) -> list[str]:
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", text, flags=re.S)]


def test_two_setup_commands_and_ci_uses_the_test_one():
    readme = (ROOT / "README.md").read_text()
    setup = readme.split("## Set-up", 1)[1].split("\n## ", 1)[0]
    blocks = _bash_blocks(setup)
    assert len(blocks) == 2, blocks
    run_cmd, test_cmd = blocks
    assert "lrgan-dist submit jobs/quickstart.yaml" in run_cmd
    assert "pytest" in test_cmd and ".[test" in test_cmd
    ci = (ROOT / ".ci" / "run").read_text()
    m = re.search(r"^TEST_CMD='(.*)'$", ci, flags=re.M)
    assert m, "TEST_CMD not found in .ci/run"
    assert m.group(1) == test_cmd


def test_quickstart_job_exists():
    assert (ROOT / "jobs" / "quickstart.yaml").is_file()
