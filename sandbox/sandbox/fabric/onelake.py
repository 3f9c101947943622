"""OneLake's files as the Data Lake Storage Gen2 API sees them: a hierarchical namespace.

Hand-written because no library serves the DFS semantics in memory (Azurite has no DFS
endpoint). It keeps what the Azure SDK observes: paths with implicit parents, files that hold
appended data uncommitted until a flush at the exact length, atomic renames, ETags.
Paths are keys `<workspace>/<item>/...` without leading or trailing slashes.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

from sandbox.fabric.errors import StorageError, path_not_found


@dataclass
class Node:
    """A file or a directory."""

    is_dir: bool
    created: float
    modified: float
    etag: str = field(default_factory=lambda: _etag())
    content: bytes = b""
    uncommitted: dict[int, bytes] = field(default_factory=dict)
    content_type: str = "application/octet-stream"

    def touch(self, now: float) -> None:
        self.modified = now
        self.etag = _etag()


def _etag() -> str:
    return f'"0x8D{uuid.uuid4().hex[:13].upper()}"'


def parent_of(path: str) -> str:
    return path.rpartition("/")[0]


class OneLakeStore:
    """Every path of every workspace; callers hold the sandbox lock."""

    def __init__(self) -> None:
        self.nodes: dict[str, Node] = {}

    def get(self, path: str) -> Node | None:
        return self.nodes.get(path)

    def require(self, path: str) -> Node:
        node = self.nodes.get(path)
        if node is None:
            raise path_not_found(path)
        return node

    def ensure_dir(self, path: str, now: float) -> None:
        """The directory and its ancestors (a hierarchical namespace creates parents)."""
        while path:
            node = self.nodes.get(path)
            if node is not None:
                if not node.is_dir:
                    raise StorageError(
                        409, "PathConflict", f"{path} is a file, so it cannot hold a path"
                    )
                return
            self.nodes[path] = Node(is_dir=True, created=now, modified=now)
            path = parent_of(path)

    def create(self, path: str, *, directory: bool, if_none_match: bool, now: float) -> Node:
        """Path - Create: a new empty file (replacing one) or a directory."""
        existing = self.nodes.get(path)
        if existing is not None and if_none_match:
            raise StorageError(409, "PathAlreadyExists", "The specified path already exists.")
        if existing is not None and existing.is_dir != directory:
            raise StorageError(
                409, "PathConflict", "The specified path, or an element of it, is of another type."
            )
        self.ensure_dir(parent_of(path), now)
        if existing is not None and directory:
            existing.touch(now)
            return existing
        node = Node(is_dir=directory, created=now, modified=now)
        self.nodes[path] = node
        return node

    def append(self, path: str, position: int, data: bytes, now: float) -> None:
        node = self.require(path)
        if node.is_dir:
            raise StorageError(400, "InvalidUri", "Append is for files, not directories.")
        if position < len(node.content):
            raise StorageError(
                400, "InvalidFlushPosition", "The position is before the end of the file."
            )
        node.uncommitted[position] = data

    def flush(self, path: str, position: int, now: float) -> Node:
        """Commit appended data: contiguous from the end of the file up to exactly `position`."""
        node = self.require(path)
        content = node.content
        for offset in sorted(node.uncommitted):
            if offset != len(content):
                break
            content += node.uncommitted[offset]
        if len(content) != position:
            raise StorageError(
                400,
                "InvalidFlushPosition",
                "The uploaded data is not contiguous or the position query parameter value is "
                "not equal to the length of the file after appending the uploaded data.",
            )
        node.content = content
        node.uncommitted.clear()
        node.touch(now)
        return node

    def children(self, path: str, *, recursive: bool) -> Iterator[tuple[str, Node]]:
        prefix = f"{path}/"
        for name in sorted(self.nodes):
            if name.startswith(prefix) and (recursive or "/" not in name[len(prefix) :]):
                yield name, self.nodes[name]

    def rename(self, source: str, destination: str, *, if_none_match: bool, now: float) -> None:
        """Atomic rename of a file or a directory; an existing destination file is replaced."""
        node = self.nodes.get(source)
        if node is None:
            raise StorageError(404, "SourcePathNotFound", "The source path does not exist.")
        target = self.nodes.get(destination)
        if target is not None and if_none_match:
            raise StorageError(409, "PathAlreadyExists", "The specified path already exists.")
        if target is not None and (target.is_dir or node.is_dir):
            raise StorageError(409, "PathConflict", "The destination path already exists.")
        if destination.startswith(f"{source}/"):
            raise StorageError(400, "InvalidDestinationPath", "A path cannot move into itself.")
        self.ensure_dir(parent_of(destination), now)
        moved = [(source, node), *self.children(source, recursive=True)]
        for name, _ in moved:
            del self.nodes[name]
        for name, child in moved:
            self.nodes[destination + name[len(source) :]] = child
        node.touch(now)

    def delete(self, path: str, *, recursive: bool) -> None:
        node = self.require(path)
        below = list(self.children(path, recursive=True))
        if node.is_dir and below and not recursive:
            raise StorageError(
                409, "DirectoryNotEmpty", "The recursive query parameter value must be true."
            )
        for name, _ in below:
            del self.nodes[name]
        del self.nodes[path]

    def delete_tree(self, path: str) -> None:
        """Forget a path and everything under it (a deleted item), if present."""
        for name in [path, *(name for name, _ in self.children(path, recursive=True))]:
            self.nodes.pop(name, None)
