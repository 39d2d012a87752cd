"""Fault injection for tests: stage hooks that slow work units down, trace them, or kill a task once.

Production code reads no test settings: the scheduler hands a
:class:`~lrgan_dist.pipeline.runtime.StageHooks` object to every worker, and tests pass
:class:`Faults` instead of the default no-op one — in process
(``submit(spec, hooks=Faults(unit_delay=0.6))``) or around the CLI::

    python -m lrgan_dist.testing.faults --unit-delay 1.0 -- submit job.yaml --no-progress

which runs the ordinary ``lrgan-dist`` command line with ``Faults`` handed to
:func:`lrgan_dist.pipeline.scheduler.submit`.

:func:`interrupt` is the one "start a slowed run, wait until it has made progress, deliver
a fault, wait for the exit" loop of the fault tests (tests/test_fault_matrix.py,
tests/pipeline/test_fault_tolerance.py, tests/store/test_s3.py); :func:`read_trace` reads
what ``--trace`` recorded (which unit started in which worker process), so a test can wait
for a given stage and kill the worker that runs it.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

from lrgan_dist.pipeline.runtime import StageHooks

__all__ = ["Faults", "TraceLine", "cli_command", "interrupt", "read_trace", "main"]


class Faults(StageHooks):
    """Hooks called by every worker at the start of every work unit.

    * ``unit_delay`` seconds of sleep before every unit of ``delay_stage`` (default the
      jacobians stage), so that a fault strikes mid-stage;
    * ``trace`` (a file path): one line ``<stage> <unit> <pid>`` appended per unit started,
      before the delay — which stage is running, in which worker process (:func:`read_trace`);
    * ``fail_once`` (a marker path): the first unit of ``fail_stage`` that finds the marker
      absent creates it and kills its own process (``os._exit``), as a crashed worker would.

    Stage names are those the workers report: ``jacobians``, ``factorize``,
    ``population``, ``transfer.linear``, ``transfer.realized``, ``previews``.
    """

    def __init__(self, unit_delay: float = 0.0, fail_once: str | None = None, fail_stage: str = "population",
                 delay_stage: str = "jacobians", trace: str | None = None):
        self.unit_delay = float(unit_delay)
        self.fail_once = fail_once
        self.fail_stage = fail_stage
        self.delay_stage = delay_stage
        self.trace = trace

    def before_unit(self, stage: str, unit: Any) -> None:
        if self.trace:
            # one write(2) of one short line on an O_APPEND file: lines of concurrent workers do not interleave
            with open(self.trace, "a") as f:
                f.write(f"{stage} {str(unit).replace(' ', '')} {os.getpid()}\n")
        if stage == self.delay_stage and self.unit_delay:
            time.sleep(self.unit_delay)
        if self.fail_once and stage == self.fail_stage and not Path(self.fail_once).exists():
            Path(self.fail_once).write_text(f"killed once: {stage} {unit}")
            os._exit(1)


class TraceLine(NamedTuple):
    stage: str
    unit: str
    pid: int


def read_trace(path: str | Path) -> list[TraceLine]:
    """The units started so far, in order, from a :class:`Faults` ``trace`` file (none if it is absent)."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3:  # a line being written is skipped until it is whole
            out.append(TraceLine(parts[0], parts[1], int(parts[2])))
    return out


def cli_command(*args: str, unit_delay: float = 0.0, fail_once: str | None = None, delay_stage: str | None = None,
                trace: str | None = None) -> list[str]:
    """argv running ``lrgan-dist ARGS`` with :class:`Faults` injected."""
    cmd = [sys.executable, "-m", "lrgan_dist.testing.faults", "--unit-delay", str(unit_delay)]
    if fail_once:
        cmd += ["--fail-once", fail_once]
    if delay_stage:
        cmd += ["--delay-stage", delay_stage]
    if trace:
        cmd += ["--trace", trace]
    return [*cmd, "--", *args]


def interrupt(cmd: Sequence[str], ready: Callable[[], bool], sig: int = signal.SIGINT, *,
              target: Callable[[], int] | None = None, env: dict[str, str] | None = None,
              timeout: float = 300.0) -> subprocess.CompletedProcess:
    """Run ``cmd`` (a slowed submit, :func:`cli_command`) in a session of its own, wait until
    ``ready()`` (progress made: chunks done, a stage's units traced), send ``sig`` to the
    process ``target()`` names (default the driver), and wait for the driver to exit.

    Returns the driver's exit status and output. Whatever the run leaves of its session
    afterwards (the embedded Ray of a SIGKILLed driver) is SIGKILLed by process group, so
    a resubmission never races the orphans of the run it resumes. Raises AssertionError when
    the run ends before the fault could be delivered: a fault that never struck tests nothing.
    """
    import tempfile

    from lrgan_dist.testing.ray_local import ray_env

    # output to files, not pipes: the Ray processes of a killed driver may hold a pipe open
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        p = subprocess.Popen(list(cmd), env=env or ray_env(), stdout=out, stderr=err, text=True,
                             stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            t0 = time.monotonic()
            while not ready():
                if p.poll() is not None:
                    raise AssertionError(f"the run exited {p.returncode} before the fault could strike\n{_read(out)}\n{_read(err)}")
                if time.monotonic() - t0 > timeout:
                    raise AssertionError(f"the run made no progress within {timeout:g} s")
                time.sleep(0.05)
            os.kill(target() if target else p.pid, sig)
            p.wait(timeout=timeout)
        finally:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(p.pid, signal.SIGKILL)
            if p.poll() is None:
                p.wait(timeout=30)
        return subprocess.CompletedProcess(p.args, p.returncode, _read(out), _read(err))


def _read(f: Any) -> str:
    f.flush()
    f.seek(0)
    return f.read()


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    rest: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, rest = argv[:i], argv[i + 1:]
    p = argparse.ArgumentParser(prog="python -m lrgan_dist.testing.faults")
    p.add_argument("--unit-delay", type=float, default=0.0)
    p.add_argument("--fail-once", default=None)
    p.add_argument("--delay-stage", default="jacobians")
    p.add_argument("--trace", default=None)
    opts = p.parse_args(argv)
    from lrgan_dist.pipeline import scheduler
    from lrgan_dist.testing.faults import Faults as Importable  # not __main__.Faults: workers import it

    hooks = Importable(opts.unit_delay, opts.fail_once, delay_stage=opts.delay_stage, trace=opts.trace)
    scheduler.submit = functools.partial(scheduler.submit, hooks=hooks)  # type: ignore[assignment]
    from lrgan_dist.cli import app

    app(args=rest, prog_name="lrgan-dist")


if __name__ == "__main__":
    main()
