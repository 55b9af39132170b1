"""Writing outputs without ever losing a user's data: atomic files and output folders, pre-flight checks.

The one home of the rules every ``--out`` follows (README, "What the tool promises"):

- **files** (:func:`atomic_write`): written to a temporary beside the target, then renamed over it; a
  failed or interrupted write leaves neither a half-written file nor the temporary, and the final file
  gets ordinary permissions (``0666 & ~umask``; ``mkstemp`` alone would leave 0600).
- **output folders** (:func:`atomic_output_dir`): a new folder is built as a hidden temporary and renamed
  into place. An existing folder is written into only when it is empty or holds a previous run of this
  tool. Every output folder carries a record of the files the tool wrote there (:data:`MANIFEST`: each
  file's path, the command that wrote it and its sha256). A file is replaced or removed only when the
  record names it and it is unchanged since; any other file in the way (a user's ``report.md``, their
  ``figures/my_plot.png`` named like one of ours, a file changed since the tool wrote it) makes the
  command refuse, before anything moves; files the tool does not write are never touched, also inside
  ``figures/``. Nothing is written through a symbolic link. Nothing is ever deleted that the tool did
  not write. A folder without the record is not a run of this tool, whatever it holds: a ``report.json``
  of this project's schema proves nothing (``report.to_json()`` saves one into a user's own folder).
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
import hashlib
import json
import os
import shutil
import signal
import tempfile
import threading
from pathlib import Path
from typing import Callable, Iterable

from gac_analysis.errors import ConfigError

#: The commands whose output folder is a run folder (another of them may add to it); ``report`` only adds
#: beside a report.json, and a record of its files alone does not make a folder a run.
RUN_KINDS = frozenset({"energy", "observe", "compare"})
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
        "compare_firing_rates.png",
        "compare_energy_by_role.png",
        "figures",
    ),
}
#: The record of what the tool wrote in an output folder (a hidden JSON file at its top).
MANIFEST = ".gac-analysis.json"
MANIFEST_SCHEMA = "gac-analysis/outputs/1"
#: Kinds whose files describe another kind's results in the same folder: a new run of the key makes
#: them stale, so they are removed with its own stale files (when unchanged since written).
STALE_AFTER = {"energy": ("report",), "observe": ("report",)}
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


def atomic_write(
    path: str | os.PathLike, write: Callable[[str], None], *, may_replace: Callable[[Path], bool] | None = None
) -> Path:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it to ``path``.

    ``may_replace``: an existing ``path`` is replaced only when it says so (checked just before the
    rename, so a file put there while ``write`` ran is not lost; a link there is never replaced)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        ordinary_mode(tmp)
        taken = path.exists() or path.is_symlink()
        if may_replace is not None and taken and (path.is_symlink() or not may_replace(path)):
            raise ConfigError(
                f"{path} was created by someone else while this command ran and was not written by this tool; "
                "nothing of yours is replaced: choose another file name"
            )
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def owns_file(path: str | os.PathLike, kind: str) -> bool:
    """``path`` is a regular file this tool wrote with ``kind`` (the record of its folder names it so) and
    nobody changed since. A file of this project's format proves nothing by itself: a user saves one
    with the Python API, or copies one."""
    path = Path(path)
    if path.is_symlink() or not path.is_file() or _manifest_in_the_way(path.parent):
        return False
    record = _read_manifest(path.parent) or {}
    entry = record.get(path.name)
    return entry is not None and entry["kind"] == kind and _owned(path.parent, record, path.name)


def _check_record_usable(folder: Path, where: str | None = None) -> None:
    """The record of ``folder`` can be read and extended: absent, or this tool's (not a user's file, folder
    or link of that name, nor unreadable). ``where``: how the message names the folder."""
    if _manifest_in_the_way(folder) or ((folder / MANIFEST).exists() and _read_manifest(folder) is None):
        raise ConfigError(
            f"{where or folder}: '{MANIFEST}' is in the way: it is not this tool's record of its files (unreadable, "
            "or a file, folder or link of yours); nothing was replaced: move it away or choose another folder"
        )


def _refuse_existing_file(path: Path, kind: str) -> None:
    """Why an existing ``path`` is not replaced by a write of ``kind`` (:func:`owns_file` said no)."""
    if path.is_symlink():
        why = "is a symbolic link; nothing is written through one: give the file's own path"
    elif path.is_dir():
        why = "is a folder; give a file path inside it"
    else:
        entry = (_read_manifest(path.parent) or {}).get(path.name)
        if entry is None:
            why = "already exists and was not written by this tool (a file of yours, or a copy)"
        elif entry["kind"] != kind:
            why = f"was written by this tool's {entry['kind']}, not by {kind}: it is not {kind}'s to replace"
        else:
            why = "was written by this tool but changed since: it is yours now"
    raise ConfigError(f"{path} {why}; nothing was replaced: choose another file name")


def write_recorded_file(path: str | os.PathLike, write: Callable[[str], None], *, kind: str) -> Path:
    """:func:`atomic_write` of one output file that replaces only a file of ``kind`` this tool wrote there
    (:func:`owns_file`), and records what it wrote in its folder's record (:data:`MANIFEST`, which then
    names this file alone, or beside the files of a run; a file of its own kind does not make the folder
    a run: :data:`RUN_KINDS`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _folder_lock(path.parent):
        _check_record_usable(path.parent)
        if (path.exists() or path.is_symlink()) and not owns_file(path, kind):  # before any writing
            _refuse_existing_file(path, kind)
        with _signals_deferred():  # the file and its record change together
            atomic_write(path, write, may_replace=lambda p: owns_file(p, kind))
            record = _read_manifest(path.parent) or {}
            record[path.name] = {"kind": kind, "sha256": file_sha256(path)}
            _write_manifest(path.parent, record)
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


def _option(kind: str) -> str:
    """How the user named the folder a kind of run writes: ``report`` writes into its RUN_DIR argument."""
    return "RUN_DIR" if kind == "report" else "--out"


def probe_writable(folder: Path, what: str, remedy: str = "choose another --out") -> None:
    """Create and remove a file in ``folder``; a :class:`ConfigError` when that fails (whatever
    ``os.access`` claims: ``/proc`` and read-only mounts say "writable" to root)."""
    try:
        fd, probe = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=".probe", dir=folder)
    except OSError as e:
        raise ConfigError(f"{what} {folder} is not writable ({e.strerror or e}); {remedy}") from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)


def _is_temporary(name: str) -> bool:
    return name.startswith(TEMP_PREFIX)


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 (hex) of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _read_manifest(folder: Path) -> dict[str, dict] | None:
    """The files this tool recorded writing in ``folder`` (relative POSIX path -> ``{"kind", "sha256"}``);
    None when there is no record of this tool's schema."""
    path = folder / MANIFEST
    if path.is_symlink():
        return None
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or data.get("schema") != MANIFEST_SCHEMA or not isinstance(data.get("files"), dict):
        return None
    return {
        k: v
        for k, v in data["files"].items()
        if _inside(k) and isinstance(v, dict) and isinstance(v.get("sha256"), str) and isinstance(v.get("kind"), str)
    }


def _inside(rel) -> bool:
    """``rel`` names a file inside the folder: a relative POSIX path without ``..``, ``.`` or empty parts
    (a record entry that does not is ignored: the tool never touches anything outside its folder)."""
    if not isinstance(rel, str) or not rel or rel.startswith("/") or "\\" in rel:
        return False
    return all(part not in ("", ".", "..") for part in rel.split("/"))


def _record(folder: Path) -> dict[str, dict] | None:
    """What this tool wrote in ``folder``: its record (:data:`MANIFEST`); None for a folder without one. A
    ``report.json`` or ``observer.json`` of this project's schema is no proof: a user saves one with
    ``report.to_json()`` into a folder of their own files."""
    return _read_manifest(folder)


def _owned(folder: Path, record: dict[str, dict], rel: str) -> bool:
    """``folder/rel`` is a regular file this tool wrote (recorded) and nobody changed since."""
    path = folder / rel
    entry = record.get(rel)
    if entry is None or _link_on_path(folder, rel) or not path.is_file():
        return False
    try:
        return file_sha256(path) == entry["sha256"]
    except OSError:
        return False


def _link_on_path(folder: Path, rel: str) -> bool:
    """A symbolic link is on the way from ``folder`` to ``folder/rel`` (the entry itself included)."""
    p = folder
    for part in Path(rel).parts:
        p = p / part
        if p.is_symlink():
            return True
    return False


def _files_under(root: Path) -> list[str]:
    """Relative POSIX paths of the regular files under ``root`` (sorted; links are not followed)."""
    found = []
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            found.append((Path(dirpath) / name).relative_to(root).as_posix())
    return sorted(found)


def _in_the_way(out: Path, record: dict[str, dict], rel: str, kind: str | None = None) -> bool:
    """Writing ``out/rel`` would replace or pass through something this tool may not touch: a link on the
    way, a file where a folder is needed, a folder where the file goes, a file it did not write (or that
    changed since), or one another command wrote (``kind``: the writing command; another's output is not
    this one's to replace)."""
    if _link_on_path(out, rel):
        return True
    parts = Path(rel).parts
    p = out
    for part in parts[:-1]:
        p = p / part
        if p.exists() and not p.is_dir():
            return True
    target = out / rel
    if not (target.exists() or target.is_symlink()):
        return False
    if target.is_dir() or not _owned(out, record, rel):
        return True
    return kind is not None and record[rel].get("kind") not in (kind, *STALE_AFTER.get(kind, ()))


def _refuse_in_the_way(out: Path, blocked: list[str], kind: str) -> None:
    named = ", ".join(f"'{b}'" for b in blocked[:3]) + (f" and {len(blocked) - 3} more" if len(blocked) > 3 else "")
    verb = "is" if len(blocked) == 1 else "are"
    raise ConfigError(
        f"{_option(kind)} {out}: {named} {verb} in the way: not written by this tool (or changed since, or a "
        f"link); nothing was replaced: move them away" + (" or choose another --out" if kind != "report" else "")
    )


def _stale(recorded_kind, rel: str, kind: str, partial_files: dict | None) -> bool:
    """A recorded file not written again by this commit is stale: of the same kind (for a partial commit,
    only inside the folders it wrote), or of a kind this one makes stale (:data:`STALE_AFTER`)."""
    if partial_files is not None:
        tops = {Path(r).parts[0] for r in partial_files if len(Path(r).parts) > 1}
        return recorded_kind == kind and Path(rel).parts[0] in tops
    return recorded_kind == kind or recorded_kind in STALE_AFTER.get(kind, ())


def _foreign_folder(out: Path, record: dict[str, dict], name: str) -> bool:
    """``out/name`` is a folder (or a link) the tool never wrote into: no recorded file lies under it (a
    user's own ``figures/`` is theirs, not a place for the tool's figures)."""
    return (out / name).is_symlink() or not any(rel.startswith(f"{name}/") for rel in record)


def _manifest_in_the_way(folder: Path) -> bool:
    """The record's name is taken by a link or a folder (never written through, never replaced)."""
    path = folder / MANIFEST
    return path.is_symlink() or (path.exists() and not path.is_file())


def _manifest_text(files: dict[str, dict]) -> str:
    data = {"schema": MANIFEST_SCHEMA, "note": "files gac-analysis wrote here (it replaces only these)", "files": files}
    return json.dumps(data, indent=1, sort_keys=True) + "\n"


def _write_manifest(folder: Path, files: dict[str, dict]) -> None:
    atomic_write_text(folder / MANIFEST, _manifest_text(files))


def _check_inputs(out: Path, inputs: Iterable[str | os.PathLike | None]) -> None:
    """Refuse an ``out`` that is an input of the run, lies inside an input folder, or would replace one."""
    for raw in inputs:
        if raw is None:
            continue
        src = absolute(raw)
        real_out, real_src = Path(os.path.realpath(out)), Path(os.path.realpath(src))
        if real_out == real_src or (real_src.is_dir() and real_src in real_out.parents):  # links resolved
            raise ConfigError(f"--out {out} is (inside) the input {src}: choose an output folder outside it")
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


def _check_reusable(out: Path, kind: str, written: Iterable[str] = ()) -> dict[str, dict]:
    """Refuse an existing ``out`` that is not a folder, or holds entries of a user's (not a previous run);
    returns what the tool wrote there (:func:`_record`; empty for an empty folder)."""
    if not out.is_dir():
        raise ConfigError(f"output path {out} exists and is not a folder; choose another --out")
    try:
        entries = sorted(e for e in os.listdir(out) if not _is_temporary(e))
    except OSError as e:
        raise ConfigError(f"cannot read the output folder {out} ({e.strerror or e}); choose another --out") from None
    if MANIFEST in entries:
        _check_record_usable(out, f"{_option(kind)} {out}")
    entries = [e for e in entries if e != MANIFEST]
    if not entries:
        return {}
    record = _record(out)
    if record is None and kind == "report":
        record = {}  # report.md and figures/ beside a report.json of the user's: new files only, nothing replaced
    elif record is None or (kind in RUN_KINDS and not any(e["kind"] in RUN_KINDS for e in record.values())):
        # (a record of report's files alone is a user's folder that report added to, not a run folder)
        recorded = {Path(rel).parts[0] for rel in record or {}}
        example = next((e for e in entries if e not in recorded), None)
        if example is None:  # every entry is the tool's, none of a run (checkpoints of train, report's files)
            kinds = sorted({e["kind"] for e in record.values()})
            raise ConfigError(
                f"{_option(kind)} {out} holds this tool's {', '.join(kinds)} outputs, not a run of energy, observe "
                "or compare: choose a new or empty folder"
            )
        raise ConfigError(
            f"{_option(kind)} {out} already holds files this tool did not write (e.g. '{example}'; it records "
            f"what it writes in {MANIFEST}); nothing of yours is replaced: choose a new or empty folder"
        )
    patterns = RUN_ENTRIES.get(kind, ())
    blocked = [
        e
        for e in entries
        if e not in written
        and e in patterns  # names it surely writes (a pattern such as encoding_*.png: checked per file at the commit)
        and (_foreign_folder(out, record, e) if (out / e).is_dir() else _in_the_way(out, record, e, kind))
    ]
    if blocked:
        _refuse_in_the_way(out, blocked, kind)
    return record


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
    if path.is_symlink():
        raise ConfigError(f"--out {path} is a symbolic link; nothing is written through one: give the file's own path")
    if path.is_dir():
        raise ConfigError(f"--out {path} is a folder; give a file path such as {path / 'model.pt'}")
    if path.exists() and (is_own is None or not is_own(path)):
        raise ConfigError(
            f"--out {path} already exists and was not written by this tool; nothing of yours is "
            "replaced: choose another file name"
        )
    if path.parent.is_dir():
        _check_record_usable(path.parent)  # the record the file will be entered in: before any work
    created = _make_parents(path.parent)
    try:
        probe_writable(path.parent, "output file's folder")
    finally:
        _remove_created(created)
    return path


# ---- the atomic output folder -----------------------------------------------------------------------


@contextlib.contextmanager
def atomic_output_dir(
    out: str | os.PathLike,
    *,
    kind: str = "output",
    inputs: Iterable = (),
    partial: bool = False,
    expect: dict | None = None,
):
    """Yield an empty temporary folder; when the block succeeds its entries become ``out``'s.

    ``kind`` names the run (``energy``, ``observe``, ``report``, ...; :data:`RUN_ENTRIES`). Checks as
    :func:`check_output_dir` first, so enter it before the work starts. A new ``out`` is the renamed
    temporary; an existing one (empty, or a previous run of this tool) gets the new entries and loses
    only the stale entries of the same kind; everything else in it is left alone. ``partial``: the block
    writes only some of its kind's files (the figures alone): stale files are removed only inside the
    folders it writes. ``expect``: files of ``out`` the block reads (relative path -> sha256), which must
    be unchanged when it commits. On failure or interruption (Ctrl-C, SIGTERM) the temporary and any parent folders
    created for it are removed.
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
            _commit(tmp, out, kind, partial, expect)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if not out.exists():
            _remove_created(created)
        raise


def _commit(tmp: Path, out: Path, kind: str, partial: bool = False, expect: dict | None = None) -> None:
    """Move the files of ``tmp`` into ``out`` (serialised by a lock, never interrupted half-way), replacing
    only files this tool recorded writing and nobody changed since, removing the stale ones of this kind
    (and of the kinds it makes stale, :data:`STALE_AFTER`), and recording what it wrote (:data:`MANIFEST`).
    ``expect``: files of ``out`` the run was made from (relative path -> sha256), checked unchanged under
    the lock (a report is never committed beside a report.json written meanwhile)."""
    new = {rel: {"kind": kind, "sha256": file_sha256(tmp / rel)} for rel in _files_under(tmp)}
    with _folder_lock(out.parent), _signals_deferred():
        if not (out.exists() or out.is_symlink()):
            _write_manifest(tmp, new)
            os.rename(tmp, out)
            return
        # again, under the lock: another process may have written meanwhile
        record = _check_reusable(out, kind, {Path(rel).parts[0] for rel in new})
        blocked = [rel for rel in new if _in_the_way(out, record, rel, kind)]
        if blocked:
            _refuse_in_the_way(out, blocked, kind)
        for rel, sha in (expect or {}).items():  # what the run was made from is still there, unchanged
            if not (out / rel).is_file() or file_sha256(out / rel) != sha:
                raise ConfigError(
                    f"{_option(kind)} {out}: {rel} changed while this command ran (another command wrote the "
                    "folder); nothing was written: run it again"
                )
        stale = [r for r, e in record.items() if r not in new and _stale(e["kind"], r, kind, new if partial else None)]
        stale = [r for r in stale if _owned(out, record, r)]
        kept = {r: e for r, e in record.items() if r not in new and r not in stale and (out / r).is_file()}
        try:
            fd, pending_record = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=".record", dir=out)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(_manifest_text({**kept, **new}))
            ordinary_mode(pending_record)
        except OSError as e:
            raise ConfigError(
                f"cannot write into the output folder {out} ({e.strerror or e}); it is unchanged"
            ) from None
        old = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, suffix=".old", dir=out))
        moved_out: list[str] = []
        moved_in: list[str] = []
        made: list[Path] = []
        try:
            for rel in [*stale, *(r for r in new if (out / r).exists())]:
                (old / rel).parent.mkdir(parents=True, exist_ok=True)
                os.rename(out / rel, old / rel)
                moved_out.append(rel)
            for rel in new:
                made += _make_parents((out / rel).parent)
                os.rename(tmp / rel, out / rel)
                moved_in.append(rel)
            os.replace(pending_record, out / MANIFEST)  # the record of what is now there, last
        except (OSError, ConfigError) as e:  # put everything back as it was
            for rel in moved_in:
                with contextlib.suppress(OSError):
                    os.rename(out / rel, tmp / rel)
            for rel in moved_out:
                with contextlib.suppress(OSError):
                    os.rename(old / rel, out / rel)
            _remove_created(made)
            shutil.rmtree(old, ignore_errors=True)
            Path(pending_record).unlink(missing_ok=True)
            reason = e.strerror if isinstance(e, OSError) and e.strerror else e
            raise ConfigError(f"cannot write into the output folder {out} ({reason}); it is unchanged") from None
        shutil.rmtree(old, ignore_errors=True)
        for rel in stale:  # folders the stale files leave empty (e.g. figures/ of an older run)
            for parent in Path(rel).parents:
                if parent != Path("."):
                    with contextlib.suppress(OSError):
                        (out / parent).rmdir()
        shutil.rmtree(tmp, ignore_errors=True)


def read_snapshot(folder: str | os.PathLike, names: Iterable[str]) -> dict[str, str]:
    """sha256 of the files ``names`` (relative paths) that exist in ``folder``: pass it as ``expect`` to
    :func:`atomic_output_dir` to commit only if they are unchanged by then (take it before reading them)."""
    folder = Path(folder)
    return {rel: file_sha256(folder / rel) for rel in names if (folder / rel).is_file()}
