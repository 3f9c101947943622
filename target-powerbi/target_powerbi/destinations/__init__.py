"""Where the target lands the local store's tables: the destinations behind one sync.

The local store (`target_powerbi.store`) is the source of what changed, whatever the
destination. A destination brings its copy level with the store before the target
emits STATE and at the end of the run (`sync`), and learns each stream's tables as
they are mapped (`register`).

- ``push``: a Power BI push dataset. Its sync is `target_powerbi.dataset.DatasetSync`
  with the target's retry of uncertain POSTs (`TargetPowerBI.push`); it stays there
  so that the push path is not rewritten while it changes elsewhere.
- ``fabric``: an open mirrored database in OneLake (`target_powerbi.destinations.fabric`).
"""

from __future__ import annotations

from typing import Protocol

from target_powerbi.mapping import TableMap


class Destination(Protocol):
    """What the target calls on a destination other than the push dataset."""

    def register(self, root: TableMap) -> None:
        """A stream's tables (root and children) were mapped for this run."""

    def sync(self) -> None:
        """Bring the destination level with the local store; return once it is durable."""

    def close(self) -> None:
        """Release connections."""
