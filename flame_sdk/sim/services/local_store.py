"""A node's local result store: files plus an SQLite index, persistent across analyses of a project.

Objects live in ``<root>/<project id>/<object id>``; the index records which analysis wrote each
object and which project tags point at it, in insertion order. The methods block (file and database I/O);
the result service calls them through ``run``, on the store's own thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    object_id TEXT PRIMARY KEY, project_id TEXT NOT NULL, analysis_id TEXT NOT NULL, filename TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tagged (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, project_id TEXT NOT NULL, tag TEXT NOT NULL,
    object_id TEXT NOT NULL REFERENCES results(object_id)
);
CREATE INDEX IF NOT EXISTS tagged_by_tag ON tagged(project_id, tag, seq);
"""


class LocalStore:
    """Node-level; every query is scoped to one project."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._db: sqlite3.Connection | None = None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="flame-sim-local-store")

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on the store's thread (its database connection belongs to that thread)."""
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    async def shutdown(self) -> None:
        """Close the index and end the store's thread."""
        await self.run(self.close)
        self._thread.shutdown(wait=False)

    def open(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.root / "index.sqlite3", isolation_level=None)
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("the local store is not open (StorageService.start() was not called)")
        return self._db

    def object_path(self, project_id: str, object_id: str) -> Path:
        return self.root / project_id / object_id

    def save(self, project_id: str, analysis_id: str, object_id: str, filename: str, tag: str | None,
             content: bytes | bytearray) -> None:
        """Write an object's file, then index it."""
        path = self.object_path(project_id, object_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        self.add(project_id, analysis_id, object_id, filename, tag)

    def add(self, project_id: str, analysis_id: str, object_id: str, filename: str, tag: str | None) -> None:
        with self.db:
            self.db.execute("INSERT INTO results VALUES (?, ?, ?, ?)", (object_id, project_id, analysis_id, filename))
            if tag is not None:
                self.db.execute("INSERT INTO tagged (project_id, tag, object_id) VALUES (?, ?, ?)",
                                (project_id, tag, object_id))

    def find(self, project_id: str, object_id: str) -> Path | None:
        row = self.db.execute("SELECT 1 FROM results WHERE object_id = ? AND project_id = ?",
                              (object_id, project_id)).fetchone()
        return self.object_path(project_id, object_id) if row else None

    def tags(self, project_id: str) -> list[str]:
        rows = self.db.execute("SELECT tag FROM tagged WHERE project_id = ? GROUP BY tag ORDER BY MIN(seq)",
                               (project_id,))
        return [tag for (tag,) in rows]

    def tagged(self, project_id: str, tag: str) -> list[tuple[str, str]]:
        """(object id, filename) of the objects under ``tag``, oldest first."""
        rows = self.db.execute(
            "SELECT t.object_id, r.filename FROM tagged t JOIN results r ON r.object_id = t.object_id "
            "WHERE t.project_id = ? AND t.tag = ? ORDER BY t.seq", (project_id, tag))
        return list(rows)
