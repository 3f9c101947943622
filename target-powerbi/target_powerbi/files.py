"""Files that hold data or secrets: 0600 in folders 0700, whatever the umask.

Only what the target creates is made private: a folder that already exists (the
working directory, /tmp) keeps its mode.
"""

from __future__ import annotations

import os
from pathlib import Path

FILE_MODE = 0o600
FOLDER_MODE = 0o700


def private_folder(folder: Path) -> None:
    """Create `folder` and its missing parents, each 0700."""
    missing: list[Path] = []
    current = folder
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for path in reversed(missing):
        try:
            path.mkdir(mode=FOLDER_MODE)
        except FileExistsError:
            continue
        path.chmod(FOLDER_MODE)


def private_file(path: Path) -> None:
    """Create `path` (and its folder) if missing; make it 0600 either way."""
    private_folder(path.parent)
    descriptor = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_APPEND, FILE_MODE)
    try:
        os.fchmod(descriptor, FILE_MODE)
    finally:
        os.close(descriptor)
