"""Writing outputs without ever losing a user's data: atomic files and output folders, pre-flight checks.

The one home of the rules every ``--out`` follows (README, "What the tool promises"):

- **files** (:func:`atomic_write`): written to a temporary beside the target, then renamed over it; a
  failed or interrupted write leaves neither a half-written file nor the temporary, and the final file
  gets ordinary permissions (``0666 & ~umask``; ``mkstemp`` alone would leave 0600).
- **output folders** (:func:`atomic_output_dir`): a new folder is built as a hidden temporary and renamed
  into place. An existing folder is written into only when it is empty or holds a previous run of this
  tool (its ``report.json`` / ``observer.json`` of this project's schema), and then only the tool's own
  entries (:data:`RUN_ENTRIES`) are replaced: a user's other files in it survive. A folder holding
  anything else is refused. Nothing is ever deleted that the tool did not write.
- **pre-flight** (:func:`check_output_dir`, :func:`check_output_file`): the destination is probed by
  actually creating (and removing) a file there before any work starts, so ``/proc/x``, ``/sys/x`` or a
  read-only mount fail at once, also as root where ``os.access`` says yes. Parent folders created for
  a run are removed again when it fails.
- **signals**: SIGTERM unwinds like Ctrl-C (:func:`sigterm_unwinds`), so no temporary is left behind;
  the final swap runs with SIGINT/SIGTERM blocked and under an exclusive ``flock`` on the parent folder,
  so two processes writing the same ``--out`` commit one after the other, never into a mixed folder; the
  checks of an existing folder take the same lock, so they never see another process's commit half-way.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import shutil
import signal
import tempfile
import threading
from pathlib import Path
from typing import Callable, Iterable

from gac_analysis.errors import ConfigError
from gac_analysis.report_model import COMPARISON_SCHEMA, OBSERVER_SCHEMA, SCHEMA

#: Top-level entries each kind of run writes into its output folder (shell patterns). Only these,
#: and the entries the run being committed wrote, are ever replaced or removed in an existing folder.
RUN_ENTRIES: dict[str, tuple[str, ...]] = {
    "energy": ("report.json", "layers.csv", "lif_sites.csv", "per_step.csv"),
    "report": ("report.md", "figures"),
    "observe": ("observer.json", "neurons.csv", "sweep.csv", "durations.png", "fraction_vs_T.png", "encoding_*.png"),
    "compare": (
        "comparison.csv",
        "comparison.json",
        "comparison.md",
        "firing_rates.png",
        "energy_by_role.png",
        "figures",
    ),
}
#: Files that mark a folder as a previous run of this tool: name -> the ``schema`` value they carry.
RUN_MARKERS = {"report.json": SCHEMA, "observer.json": OBSERVER_SCHEMA, "comparison.json": COMPARISON_SCHEMA}
#: Prefix of the hidden temporaries made inside an existing output folder (ignored as foreign entries).
TEMP_PREFIX = ".gac-analysis-"
_BLOCKED = {signal.SIGINT, signal.SIGTERM}


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def ordinary_mode(path: str | os.PathLike, *, folder: bool = False) -> None:
    """Give ``path`` the permissions a plain ``open``/``mkdir`` would have given it."""
    os.chmod(path, (0o777 if folder else 0o666) & ~_umask())


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        ordinary_mode(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


# ---- signals ----------------------------------------------------------------------------------------


@contextlib.contextmanager
def sigterm_unwinds():
    """Turn SIGTERM into ``SystemExit(143)`` while the block runs (main thread only), so the stack
    unwinds and temporaries are removed exactly as after Ctrl-C (schedulers and CI cancel with SIGTERM)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _signals_deferred():
    """Defer SIGINT/SIGTERM until the block is done (a commit is never cut in half)."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _BLOCKED)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


@contextlib.contextmanager
def _folder_lock(folder: Path):
    """Exclusive ``flock`` on ``folder`` itself (no lock file is left behind); a no-op where unsupported."""
    try:
        import fcntl

        fd = os.open(folder, os.O_RDONLY)
    except (ImportError, OSError):
        yield
        return
    try:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


# ---- pre-flight ------------------------------------------------------------------------------------


def absolute(path: str | os.PathLike) -> Path:
    """``path`` made absolute and normalised (``.`` and ``..`` resolved textually, symlinks kept)."""
    return Path(os.path.abspath(os.path.expanduser(os.fspath(path))))


def _make_parents(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing ancestors; return those created, outermost first."""
    missing = []
    p = folder
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    created = []
    try:
        for q in reversed(missing):
            try:
                q.mkdir()
            except FileExistsError:
                if q.is_dir():  # another process made it meanwhile (two runs, one --out): not ours to remove
                    continue
                raise
            created.append(q)
    except OSError as e:
        _remove_created(created)
        raise ConfigError(
            f"cannot create the folder {q} for the output: {e.strerror or e}; choose another --out"
        ) from None
    return created


def _remove_created(created: list[Path]) -> None:
    """Remove the (empty) folders :func:`_make_parents` created, innermost first."""
    for p in reversed(created):
        with contextlib.suppress(OSError):
            p.rmdir()


def probe_writable(folder: Path, what: str) -> None:
    """Create and remove a file in ``folder``; a :class:`ConfigError` when that fails (whatever
    ``os.access`` claims: ``/proc`` and read-only mounts say "writable" to root)."""
    try:
        fd, probe = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=".probe", dir=folder)
    except OSError as e:
        raise ConfigError(f"{what} {folder} is not writable ({e.strerror or e}); choose another --out") from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)


def _is_temporary(name: str) -> bool:
    return name.startswith(TEMP_PREFIX)


def holds_previous_run(folder: Path) -> bool:
    """Whether ``folder`` holds a run of this tool: a ``report.json`` / ``observer.json`` of its schema."""
    for name, schema in RUN_MARKERS.items():
        try:
            with open(folder / name, encoding="utf-8") as f:
                if json.load(f).get("schema") == schema:
                    return True
        except (OSError, ValueError, AttributeError):
            continue
    return False


def _owned(name: str, kind: str, written: Iterable[str] = ()) -> bool:
    return name in written or any(fnmatch.fnmatchcase(name, pat) for pat in RUN_ENTRIES.get(kind, ()))


def _check_inputs(out: Path, inputs: Iterable[str | os.PathLike | None]) -> None:
    """Refuse an ``out`` that is an input of the run, lies inside an input folder, or would replace one."""
    for raw in inputs:
        if raw is None:
            continue
        src = absolute(raw)
        if out == src or (src.is_dir() and src in out.parents):
            raise ConfigError(f"--out {out} is (inside) the input {src}: choose an output folder outside it")
        if out in src.parents:
            top = src.relative_to(out).parts[0]
            if any(fnmatch.fnmatchcase(top, pat) for pats in RUN_ENTRIES.values() for pat in pats):
                raise ConfigError(f"--out {out} would replace the input {src}: choose another --out")


def _check_reusable_now(out: Path, kind: str) -> None:
    """:func:`_check_reusable` under the lock that commits take (:func:`_commit`): another process writing the
    same ``out`` is never seen half-way through its commit (its marker ``report.json`` moved out for a moment,
    which would read as a folder of a user's files)."""
    with _folder_lock(out.parent):
        _check_reusable(out, kind)


def _check_reusable(out: Path, kind: str, written: Iterable[str] = ()) -> None:
    """Refuse an existing ``out`` that is not a folder, or holds entries of a user's (not a previous run)."""
    if not out.is_dir():
        raise ConfigError(f"output path {out} exists and is not a folder; choose another --out")
    try:
        entries = sorted(e for e in os.listdir(out) if not _is_temporary(e))
    except OSError as e:
        raise ConfigError(f"cannot read the output folder {out} ({e.strerror or e}); choose another --out") from None
    if entries and not holds_previous_run(out):
        raise ConfigError(
            f"--out {out} already holds files this tool did not write (e.g. '{entries[0]}'); nothing "
            "of yours is replaced: choose a new or empty folder"
        )


def check_output_dir(out: str | os.PathLike, *, kind: str = "output", inputs: Iterable = ()) -> Path:
    """Check, before any work, that ``out`` can become (or be updated as) an output folder of ``kind``.

    Leaves nothing behind: parent folders it had to create for the probe are removed again. Returns
    ``out`` made absolute. Raises :class:`ConfigError` (one line) otherwise.
    """
    out = absolute(out)
    _check_inputs(out, inputs)
    if out.exists() or out.is_symlink():
        _check_reusable_now(out, kind)
        probe_writable(out, "output folder")
        return out
    created = _make_parents(out.parent)
    try:
        probe_writable(out.parent, "output folder's parent")
    finally:
        _remove_created(created)
    return out


#: Kept for callers of the earlier name.
check_output_path = check_output_dir


def check_output_file(path: str | os.PathLike, *, is_own: Callable[[Path], bool] | None = None) -> Path:
    """Check, before any work, that ``path`` can be written as an output file; leaves nothing behind.

    An existing file is replaced only when ``is_own(path)`` says this tool wrote it.
    """
    path = absolute(path)
    if path.is_dir():
        raise ConfigError(f"--out {path} is a folder; give a file path such as {path / 'model.pt'}")
    if path.exists() and (is_own is None or not is_own(path)):
        raise ConfigError(
            f"--out {path} already exists and was not written by this tool; nothing of yours is "
            "replaced: choose another file name"
        )
    created = _make_parents(path.parent)
    try:
        probe_writable(path.parent, "output file's folder")
    finally:
        _remove_created(created)
    return path


# ---- the atomic output folder -----------------------------------------------------------------------


@contextlib.contextmanager
def atomic_output_dir(out: str | os.PathLike, *, kind: str = "output", inputs: Iterable = ()):
    """Yield an empty temporary folder; when the block succeeds its entries become ``out``'s.

    ``kind`` names the run (``energy``, ``observe``, ``report``, ...; :data:`RUN_ENTRIES`). Checks as
    :func:`check_output_dir` first, so enter it before the work starts. A new ``out`` is the renamed
    temporary; an existing one (empty, or a previous run of this tool) gets the new entries and loses
    only the stale entries of the same kind; everything else in it is left alone. On failure or
    interruption (Ctrl-C, SIGTERM) the temporary and any parent folders created for it are removed.
    """
    out = absolute(out)
    _check_inputs(out, inputs)
    created: list[Path] = []
    if out.exists() or out.is_symlink():
        _check_reusable_now(out, kind)
        where = out
    else:
        created = _make_parents(out.parent)
        where = out.parent
    try:
        tmp = Path(
            tempfile.mkdtemp(prefix=TEMP_PREFIX if where == out else f".{out.name}.", suffix=".partial", dir=where)
        )
    except OSError as e:
        _remove_created(created)
        raise ConfigError(f"output folder {where} is not writable ({e.strerror or e}); choose another --out") from None
    try:
        with sigterm_unwinds():
            ordinary_mode(tmp, folder=True)  # mkdtemp makes 0700; the output is an ordinary folder
            yield tmp
            _commit(tmp, out, kind)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if not out.exists():
            _remove_created(created)
        raise


def _commit(tmp: Path, out: Path, kind: str) -> None:
    """Move the entries of ``tmp`` into ``out`` (serialised by a lock, never interrupted half-way)."""
    with _folder_lock(out.parent), _signals_deferred():
        if not (out.exists() or out.is_symlink()):
            os.rename(tmp, out)
            return
        written = set(os.listdir(tmp))
        _check_reusable(out, kind, written)  # again: another process may have written meanwhile
        old = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, suffix=".old", dir=out))
        moved_out: list[str] = []
        moved_in: list[str] = []
        try:
            for name in sorted(os.listdir(out)):
                if not _is_temporary(name) and _owned(name, kind, written):
                    os.rename(out / name, old / name)
                    moved_out.append(name)
            for name in sorted(written):
                os.rename(tmp / name, out / name)
                moved_in.append(name)
        except OSError as e:  # put everything back as it was
            for name in moved_in:
                with contextlib.suppress(OSError):
                    os.rename(out / name, tmp / name)
            for name in moved_out:
                with contextlib.suppress(OSError):
                    os.rename(old / name, out / name)
            with contextlib.suppress(OSError):
                old.rmdir()
            raise ConfigError(
                f"cannot write into the output folder {out} ({e.strerror or e}); it is unchanged"
            ) from None
        shutil.rmtree(old, ignore_errors=True)
        with contextlib.suppress(OSError):
            tmp.rmdir()
