"""Zonefiles and hosts files, watched on disk.

Robust to the ways files really change (editors' atomic saves, in-place writes, bind mounts whose
inode never changes, files deleted and recreated): the parent directory is watched (inotify via
watchdog), and a slow poll of (inode, mtime, size) catches what events miss. A change re-parses
that file only; a parse error (`file:line: reason`) or a vanished file keeps its last good records."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from ..errors import ZoneSyntaxError
from ..zone.parse import parse_hosts, parse_zone
from ..zone.records import ZoneRecord
from ..zone.store import Store, collector_paused
from ..zone.zone import Fragment

log = logging.getLogger(__name__)
DEBOUNCE_SECONDS = 0.05  # let a multi-step save finish before reading
Stamp = tuple[int, int, int]


@dataclass(frozen=True, slots=True)
class WatchedPath:
    """A `--zonefile` or `--hosts` argument: a file, or a directory of `*.zone` files."""

    path: Path
    kind: str  # "zone" or "hosts"

    @property
    def root(self) -> Path:
        """The mounted tree: `$INCLUDE` reads nothing outside it."""
        return self.path if self.path.is_dir() else self.path.parent

    def files(self) -> list[Path]:
        if self.path.is_dir():
            return sorted(p for p in self.path.glob("*.zone") if p.is_file())
        return [self.path]


@dataclass(frozen=True, slots=True)
class LoadedFile:
    """One file read: its records, and the warnings met (`file:line: why`)."""

    records: list[ZoneRecord]
    warnings: list[str]


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1
        raise ZoneSyntaxError(str(path), line, "not UTF-8 text") from None


class _IncludeReader:
    """`$INCLUDE`'s files: named relative to the including file's directory, and never read from
    outside `root` (the mounted tree), symbolic links followed first."""

    def __init__(self, root: Path, read: list[Path]) -> None:
        self.root = root.resolve()
        self.read = read

    def __call__(self, name: str, including: str) -> tuple[str, str]:
        path = Path(including).parent / name
        if not path.resolve().is_relative_to(self.root):
            raise ValueError(f"outside {self.root}; not read")
        self.read.append(path)  # before reading: a file that is not there yet is watched too
        return _read_text(path), str(path)


def parse_file(path: Path, kind: str, root: Path | None = None, included: list[Path] | None = None) -> LoadedFile:
    """Read and parse one file (and what it includes, from under `root`, by default its own
    directory, each added to `included` even when reading fails); every failure is a
    ZoneSyntaxError naming the file and line."""
    text = _read_text(path)
    if kind == "hosts":
        return LoadedFile(parse_hosts(text, str(path)), [])
    includes = _IncludeReader(root or path.parent, [] if included is None else included)
    warnings: list[str] = []
    # Without $ORIGIN, the file name is the origin: dev.test.zone serves dev.test.
    records = parse_zone(text, str(path), origin=path.name.removesuffix(".zone"), default_ttl=None,
                         read_include=includes, warnings=warnings)
    return LoadedFile(records, warnings)


def _stamp(path: Path) -> Stamp | None:
    try:
        st = path.stat()
    except OSError:
        return None
    if not path.is_file():
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


class FileSource:
    def __init__(self, store: Store, zonefiles: Sequence[Path], hosts: Sequence[Path],
                 poll_interval: float = 2.0) -> None:
        self._store = store
        self._watched = [WatchedPath(p, "zone") for p in zonefiles] + [WatchedPath(p, "hosts") for p in hosts]
        self._poll_interval = poll_interval
        self._stamps: dict[Path, tuple[Stamp, tuple[Stamp | None, ...]]] = {}
        self._sources: dict[Path, WatchedPath] = {}
        self._included: dict[Path, tuple[Path, ...]] = {}  # each file's $INCLUDEs, watched with it
        self._watched_dirs: set[Path] = set()
        self._missing: set[Path] = set()
        self._empty: set[Path] = set()  # watched directories already said to hold no zonefile
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._observer: Observer | None = None
        self._thread: threading.Thread | None = None
        self.reloads = 0
        self.errors = 0
        self.warnings: list[str] = []  # those of the last rescan, for `check`

    def load(self) -> list[ZoneSyntaxError]:
        """The first load (also used by `check`): returns the errors it logged."""
        return self.rescan()

    def rescan(self, force: bool = False) -> list[ZoneSyntaxError]:
        """Re-read every file whose stamp changed (every file, with `force`: what SIGHUP asks
        for, since a copy that restores mtime and size leaves no stamp to see); return the
        parse errors met."""
        with self._lock:
            errors: list[ZoneSyntaxError] = []
            self.warnings = []
            current: dict[Path, WatchedPath] = {}
            for watched in self._watched:
                files = watched.files()
                self._note_empty(watched.path, bool(files))
                for path in files:
                    current[path] = watched
            for path in list(self._sources):
                if path not in current and path not in self._missing:
                    current[path] = self._sources[path]  # vanished from a directory: keep watching
            for path, watched in current.items():
                self._sources[path] = watched
                error = self._refresh(path, watched, force)
                if error is not None:
                    errors.append(error)
            return errors

    def _note_empty(self, path: Path, has_files: bool) -> None:
        """Say once when a watched directory holds no `*.zone` file: a compose mount of a host
        directory that does not exist arrives as an empty one, and serves nothing in silence."""
        if has_files or not path.is_dir():
            self._empty.discard(path)
            return
        if path in self._empty:
            return
        self._empty.add(path)
        try:
            others = sorted(entry.name for entry in path.iterdir())
        except OSError as exc:
            log.warning("%s: cannot list the directory: %s; no zonefile served from it", path, exc.strerror)
            return
        if others:
            log.warning("%s: no *.zone file in the directory (it holds %s); nothing served from it", path,
                        ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else ""))
        else:
            log.info("%s: the directory is empty: no *.zone file to serve; zonefiles saved there are "
                     "loaded without a restart", path)

    def _refresh(self, path: Path, watched: WatchedPath, force: bool) -> ZoneSyntaxError | None:
        stamp = _stamp(path)
        if stamp is None:
            if path not in self._missing and (path in self._stamps or not path.exists()):
                self._missing.add(path)
                log.warning("%s: gone or not a regular file; its last records keep serving", path)
            return None
        if path in self._missing:
            self._missing.discard(path)
            log.info("%s: back", path)
        stamps = (stamp, tuple(_stamp(p) for p in self._included.get(path, ())))
        if self._stamps.get(path) == stamps and not force:
            return None
        self._stamps[path] = stamps
        if stamp[2] == 0 and self._store.fragment(f"file:{path}"):
            # An empty file is far more often a write caught half-way (truncate, then write) than
            # an intent to drop every record; to clear a file, leave a comment in it.
            log.warning("%s: empty; its last records keep serving", path)
            return None
        included: list[Path] = []
        with collector_paused():  # parsing and building are one stretch of allocation
            try:
                loaded = parse_file(path, watched.kind, watched.root, included)
            except ZoneSyntaxError as exc:
                self._track_includes(path, stamp, included)
                self.errors += 1
                kept = self._store.fragment(f"file:{path}")
                log.error("%s (%s)", exc, "last good version keeps serving" if kept else "nothing loaded from it")
                return exc
            except OSError as exc:
                log.warning("%s: cannot read: %s", path, exc.strerror)
                self._stamps.pop(path, None)
                return None
            self._store.put(f"file:{path}", Fragment(tuple(loaded.records)))
        self._track_includes(path, stamp, included)
        for warning in loaded.warnings:
            log.warning("%s", warning)
        self.warnings.extend(loaded.warnings)
        self.reloads += 1
        log.info("%s: loaded %d records", path, len(loaded.records))
        return None

    def _track_includes(self, path: Path, stamp: Stamp, included: list[Path]) -> None:
        """Remember the files `path` included this time, so a change to one reloads it."""
        if tuple(included) != self._included.get(path, ()):
            self._included[path] = tuple(included)
            self._stamps[path] = (stamp, tuple(_stamp(p) for p in included))
            for each in included:
                self._watch(each.parent)

    # -- watching ----------------------------------------------------------------------

    def start(self) -> None:
        """Watch the files' directories and poll as a fallback, from one background thread."""
        self._observer = Observer()
        for directory in {w.root for w in self._watched} | {p.parent for ps in self._included.values() for p in ps}:
            self._watch(directory)
        self._observer.daemon = True
        self._observer.start()
        self._thread = threading.Thread(target=self._loop, name="file-watch", daemon=True)
        self._thread.start()

    def _watch(self, directory: Path) -> None:
        """Wake on any change in `directory` (once the watcher runs; the poll covers the rest)."""
        if self._observer is None or directory in self._watched_dirs:
            return
        self._watched_dirs.add(directory)
        try:
            self._observer.schedule(_WakeOnEvent(self._wake), str(directory), recursive=False)
        except OSError as exc:
            log.warning("%s: cannot watch (%s); polling every %.1fs", directory, exc, self._poll_interval)

    def _loop(self) -> None:
        while not self._stopping.is_set():
            woken = self._wake.wait(self._poll_interval)
            if self._stopping.is_set():
                return
            if woken:
                self._stopping.wait(DEBOUNCE_SECONDS)
                self._wake.clear()
            self.rescan()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=2)
        if self._thread is not None:
            self._thread.join(timeout=2)


class _WakeOnEvent(FileSystemEventHandler):
    def __init__(self, wake: threading.Event) -> None:
        self._wake = wake

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type not in ("opened", "closed_no_write"):
            self._wake.set()
