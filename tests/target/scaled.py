"""target-powerbi on a clock that runs `time_scale` times faster, for time-scaled sandboxes.

Test-side only: the plugin measures Power BI's windows on the real clock. Here a
subclass injects a faster clock (`ScaledClock`), reads the sandbox's Retry-After
(real seconds) on it, and backs off as much faster.

Run as a program it is the target itself: ``python tests/target/scaled.py --config ...``
with ``SCALED_TARGET_TIME_SCALE`` set (default 1).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `tests` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from target_powerbi.client import PowerBIClient
from target_powerbi.limits import Clock
from target_powerbi.settings import Settings
from target_powerbi.target import TargetPowerBI
from typing_extensions import override

SCALE_ENV = "SCALED_TARGET_TIME_SCALE"
# The program that runs the target on a scaled clock (see `command`).
SCRIPT = Path(__file__).resolve()


class ScaledClock:
    """Time running `time_scale` times faster than the wall clock."""

    def __init__(self, time_scale: float = 1.0) -> None:
        if time_scale <= 0:
            msg = f"time_scale must be positive, got {time_scale}"
            raise ValueError(msg)
        self.time_scale = time_scale

    def now(self) -> float:
        return time.monotonic() * self.time_scale

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds / self.time_scale)


class ScaledClient(PowerBIClient):
    """A client on a `ScaledClock`: Retry-After in real seconds, backoff as fast as the clock."""

    def __init__(
        self,
        settings: Settings,
        logger: logging.Logger,
        *,
        clock: Clock | None = None,
        backoff_factor: float = 1.0,
    ) -> None:
        scaled = clock if isinstance(clock, ScaledClock) else ScaledClock(1.0)
        super().__init__(
            settings, logger, clock=scaled, backoff_factor=backoff_factor / scaled.time_scale
        )
        self.time_scale = scaled.time_scale

    @override
    def clock_seconds(self, wall_seconds: float) -> float:
        return wall_seconds * self.time_scale


def scaled_client(
    config: dict[str, Any], logger: logging.Logger, time_scale: float = 1.0
) -> ScaledClient:
    """A client from a plain config dict on a clock `time_scale` times faster."""
    return ScaledClient(Settings.from_config(config), logger, clock=ScaledClock(time_scale))


def scaled_target(time_scale: float) -> type[TargetPowerBI]:
    """TargetPowerBI whose client runs on a clock `time_scale` times faster."""

    class ScaledTarget(TargetPowerBI):
        client_class = ScaledClient
        clock = ScaledClock(time_scale)

    return ScaledTarget


def command(python: str | None = None) -> list[str]:
    """The argv prefix that runs the target on the scaled clock (set SCALED_TARGET_TIME_SCALE)."""
    return [python or sys.executable, str(SCRIPT)]


if __name__ == "__main__":
    scaled_target(float(os.environ.get(SCALE_ENV) or 1.0)).cli()
