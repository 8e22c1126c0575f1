"""The bench store's plumbing: run keys, row shapes, append-only JSON lines, atomic files, a lock.

A store is a folder holding ``runs.jsonl``, one JSON object per run, only ever appended to.
Each row carries ``"key"``, a stable hash of the canonical JSON of its whole configuration
(``"config"``), and ``"writer"``, the command that wrote it ("bench" or "demo"). Readers keep
the latest row per key, so a store written twice (two processes, a rerun) counts each
configuration once. Derived files (leaderboard, plots, solved weights) are written atomically:
into a temporary file in the same folder, then ``os.replace``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import json
import os
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import convextx

LOCK_FILE = ".lock"
NEW_FILE_MODE = 0o644  # mkstemp creates 0600; results are meant to be read by others too


def _text(value: Any) -> bool:
    return isinstance(value, str)


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _optional_number(value: Any) -> bool:
    return value is None or _number(value)


def _history(value: Any) -> bool:
    return isinstance(value, dict) and all(
        isinstance(value.get(k), list) for k in ("time", "objective")
    )


#: every row: what ran
_IDENTITY = {"task": _text, "model": _text, "seed": _integer}
#: a failed row
_FAILED = {"error": _text}
#: a successful row: the fields the leaderboard, table and plots read
_RESULT = {
    "metric": _text,
    "objective_terms": _text,
    "history": _history,
    "wall_seconds": _number,
    "cpu_seconds": _number,
    **dict.fromkeys(
        ("train_metric", "test_metric", "objective", "certified_optimum", "gap"), _optional_number
    ),
}


class BenchError(Exception):
    """A bench or demo refused to run on its output folder (held by another process, or holding
    files that the command did not write)."""


def package_version() -> str:
    """The installed convextx version (``convextx.__version__`` where defined), "unknown" for a
    source tree that was never installed."""
    found = getattr(convextx, "__version__", None)
    if isinstance(found, str):
        return found
    try:
        return importlib.metadata.version("convextx")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def config_key(config: Mapping[str, Any]) -> str:
    """The SHA-256 of ``config``'s canonical JSON (sorted keys, no spaces); TypeError naming the
    configuration when a value is not JSON (e.g. an object as a setting)."""
    try:
        text = json.dumps(config, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"settings must be finite JSON values (numbers, strings, lists, dicts) to be stored; "
            f"{error} in {config!r}"
        ) from None
    return hashlib.sha256(text.encode()).hexdigest()


def row_problem(row: Any) -> str | None:
    """What makes ``row`` unusable as a stored run, or None if it has a run's shape: task,
    model (str), seed (int), a str "key" if any, and either "error" (str) or the result fields
    the reports read."""
    if not isinstance(row, dict):
        return f"expected a JSON object, got {type(row).__name__}"
    fields = {**_IDENTITY, **(_FAILED if "error" in row else _RESULT)}
    if "key" in row:
        fields["key"] = _text
    wrong = [name for name, valid in fields.items() if name not in row or not valid(row[name])]
    return f"missing or mistyped fields {wrong}" if wrong else None


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a runs.jsonl in file order ([] if it does not exist). A line cut short by a
    killed run, or a valid JSON line that is not a run (``row_problem``), is skipped with a
    warning naming the file and line."""
    if not path.exists():
        return []
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            warnings.warn(f"{path}:{number}: skipping an unreadable line", stacklevel=3)
            continue
        problem = row_problem(row)
        if problem:
            warnings.warn(f"{path}:{number}: skipping a malformed run ({problem})", stacklevel=3)
            continue
        rows.append(row)
    return rows


def latest(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The last row of each key (rows without a key, written before keys existed, are left
    out): the store's current view."""
    return {row["key"]: row for row in rows if "key" in row}


def append_row(path: Path, row: Mapping[str, Any]) -> None:
    """Append ``row`` as one JSON line (after a newline if the file ends in a cut-short line),
    flushed to disk before returning."""
    line = (json.dumps(row) + "\n").encode()
    with path.open("a+b") as f:
        if f.seek(0, os.SEEK_END) > 0:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                line = b"\n" + line
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path next to ``path`` (same suffix) to write to; it replaces ``path`` when
    the block ends, and is removed if the block raises, so ``path`` is never half written."""
    path = Path(path)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    temporary = Path(name)
    try:
        yield temporary
        os.chmod(temporary, path.stat().st_mode if path.exists() else NEW_FILE_MODE)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_text(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically; returns ``path``."""
    with atomic_path(path) as temporary:
        temporary.write_text(text)
    return path


@contextlib.contextmanager
def locked(folder: Path) -> Iterator[Path]:
    """Hold an exclusive lock on ``folder``/.lock (``fcntl.flock``, released on exit, even when
    the process dies), recording this process id in it. BenchError at once if another process
    holds it, naming the lock and that process."""
    path = folder / LOCK_FILE
    with path.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip()
            raise BenchError(
                f"{path} is held by another convextx process"
                f"{f' (pid {owner})' if owner else ''}, writing to {folder}; wait for it to "
                "finish or use another output folder"
            ) from None
        handle.truncate(0)
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield path
        finally:
            handle.truncate(0)
