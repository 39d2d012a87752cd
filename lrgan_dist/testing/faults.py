"""Fault injection for tests: stage hooks that slow work units down or kill a task once.

Production code reads no test settings: the scheduler hands a
:class:`~lrgan_dist.pipeline.runtime.StageHooks` object to every worker, and tests pass
:class:`Faults` instead of the default no-op one — in process
(``submit(spec, hooks=Faults(unit_delay=0.6))``) or around the CLI::

    python -m lrgan_dist.testing.faults --unit-delay 1.0 -- submit job.yaml --no-progress

which runs the ordinary ``lrgan-dist`` command line with ``Faults`` handed to
:func:`lrgan_dist.pipeline.scheduler.submit`.
"""
from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from lrgan_dist.pipeline.runtime import StageHooks

__all__ = ["Faults", "cli_command", "main"]


class Faults(StageHooks):
    """``unit_delay`` seconds of sleep before every jacobians unit; with ``fail_once`` (a
    marker path), the first unit of ``fail_stage`` that finds the marker absent creates it
    and kills its own process (``os._exit``), as a crashed worker would."""

    def __init__(self, unit_delay: float = 0.0, fail_once: str | None = None, fail_stage: str = "population"):
        self.unit_delay = float(unit_delay)
        self.fail_once = fail_once
        self.fail_stage = fail_stage

    def before_unit(self, stage: str, unit: Any) -> None:
        if stage == "jacobians" and self.unit_delay:
            time.sleep(self.unit_delay)
        if self.fail_once and stage == self.fail_stage and not Path(self.fail_once).exists():
            Path(self.fail_once).write_text(f"killed once: {stage} {unit}")
            os._exit(1)


def cli_command(*args: str, unit_delay: float = 0.0, fail_once: str | None = None) -> list[str]:
    """argv running ``lrgan-dist ARGS`` with :class:`Faults` injected."""
    cmd = [sys.executable, "-m", "lrgan_dist.testing.faults", "--unit-delay", str(unit_delay)]
    if fail_once:
        cmd += ["--fail-once", fail_once]
    return [*cmd, "--", *args]


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    rest: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, rest = argv[:i], argv[i + 1:]
    p = argparse.ArgumentParser(prog="python -m lrgan_dist.testing.faults")
    p.add_argument("--unit-delay", type=float, default=0.0)
    p.add_argument("--fail-once", default=None)
    opts = p.parse_args(argv)
    from lrgan_dist.pipeline import scheduler
    from lrgan_dist.testing.faults import Faults as Importable  # not __main__.Faults: workers import it

    hooks = Importable(opts.unit_delay, opts.fail_once)
    scheduler.submit = functools.partial(scheduler.submit, hooks=hooks)  # type: ignore[assignment]
    from lrgan_dist.cli import app

    app(args=rest, prog_name="lrgan-dist")


if __name__ == "__main__":
    main()
