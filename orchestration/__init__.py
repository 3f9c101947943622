"""Dagster deployment of the project: `dagster dev -m orchestration` (see README, Scaling out)."""

from orchestration.definitions import defs

__all__ = ["defs"]
