"""How `make test` spreads the suite over pytest-xdist workers (README, "Writing tests").

pyproject's addopts run `pytest -n auto --dist loadgroup --no-loadscope-reorder`:
- `auto` is one worker per CPU this process may run on, at most 4
  (PYTEST_XDIST_AUTO_NUM_WORKERS overrides it; `-n 0` runs serially, e.g. for pdb);
- `loadgroup` here sends each test module whole to one worker, in file order, so the
  module- and class-scoped sandboxes and pipeline runs are set up once, as in a serial run,
  and a module's tests run in order; a test marked `xdist_group("name")` goes with the
  others of that name instead, whatever its module (tests sharing one fixed resource);
- `--no-loadscope-reorder` hands modules out in collection order, tests/e2e (the longest)
  first, rather than the most numerous first.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

try:
    from xdist.scheduler import LoadGroupScheduling
except ImportError:  # pytest -p no:xdist: nothing to schedule
    LoadGroupScheduling = None


if LoadGroupScheduling is not None:

    class ModuleScheduling(LoadGroupScheduling):  # type: ignore[misc,valid-type]
        """xdist's loadgroup, grouping by module where a test names no group.

        xdist's own loadgroup spreads ungrouped tests one by one, which runs a module's
        shared fixtures once on every worker; its loadscope keeps modules together but
        ignores `xdist_group`. This keeps both.
        """

        def _split_scope(self, nodeid: str) -> str:
            if nodeid.rfind("@") > nodeid.rfind("]"):  # loadgroup's `name@group` suffix
                return nodeid.rsplit("@", 1)[-1]
            return nodeid.split("::", 1)[0]


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    if LoadGroupScheduling is None or config.getvalue("dist") != "loadgroup":
        return None
    return ModuleScheduling(config, log)


MAX_WORKERS = 4  # each worker runs sandboxes and whole Meltano pipelines: memory, not CPUs


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """xdist counts physical cores (psutil), which is 1 on a 2-vCPU hyperthreaded runner;
    the CPUs this process may use is what the workers get."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None  # xdist's own hook reads it
    return max(1, min(len(os.sched_getaffinity(0)), MAX_WORKERS))
