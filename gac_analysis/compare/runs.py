"""Reading the runs to compare: an energy run folder (``gac-analyze energy --out DIR``) and, where
present, its observer run (``DIR/observer.json`` or ``DIR/observe/observer.json``).

This is the one place where ``compare`` touches report files; the table logic works on the plain
dictionaries returned here (the reports' JSON form). No torch import.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gac_analysis.errors import ConfigError, ReportError

__all__ = ["Run", "read_run", "read_runs", "run_names"]


@dataclass
class Run:
    """One run to compare: its display ``name``, folder, energy report and observer report (or None)."""

    name: str
    path: Path
    report: dict
    observer: dict | None
    observer_path: Path | None = None
    observer_ignored: str | None = None  # why its folder's observer.json is not this run's (not attached)


def _energy_report(path: Path) -> dict:
    """The energy report of a run folder (or a report.json path) as its JSON dictionary, read and checked by
    the report model."""
    from gac_analysis.report_model import load_energy_report

    return load_energy_report(path).to_dict()


def _observer_report(path: Path) -> dict:
    """The observer report ``path`` (observer.json) as its JSON dictionary, read and checked by the report model."""
    from gac_analysis.report_model import load_observer_report

    return load_observer_report(path).data


def read_run(path: str | Path, name: str) -> Run:
    """Read one run: ``path`` is an energy run folder or its report.json. Its observer run
    (``report_model.find_observer``) is attached only when it describes the same model
    (``report_model.observer_mismatch``); otherwise ``observer_ignored`` says why."""
    from gac_analysis.report_model import find_observer, observer_mismatch

    path = Path(path)
    if not path.exists():
        raise ReportError(f"run {path} does not exist; pass folders written by `gac-analyze energy --out DIR`")
    report = _energy_report(path)
    folder = path if path.is_dir() else path.parent
    obs_path = find_observer(folder)
    observer = _observer_report(obs_path) if obs_path is not None else None
    ignored = observer_mismatch(report, observer) if observer is not None else None
    if ignored is not None:
        observer, obs_path = None, None
    return Run(
        name=name, path=folder, report=report, observer=observer, observer_path=obs_path, observer_ignored=ignored
    )


def run_names(paths: list[Path], names: str | None) -> list[str]:
    """Display names: ``--names a,b,...`` (one per run, distinct, non-empty) or the folders' names
    (made distinct by their parent folders where two are equal)."""
    if names is not None:
        given = [n.strip() for n in names.split(",")]
        if len(given) != len(paths):
            raise ConfigError(
                f"--names gives {len(given)} names for {len(paths)} runs; give one name per run, comma-separated"
            )
        if any(not n for n in given) or len(set(given)) != len(given):
            raise ConfigError(f"--names {names!r}: names must be non-empty and distinct")
        return given
    folders = [Path(p) if Path(p).is_dir() or not Path(p).suffix else Path(p).parent for p in paths]
    out = [f.resolve().name or str(f) for f in folders]
    if len(set(out)) != len(out):
        out = [str(f) for f in folders]
    if len(set(out)) != len(out):
        out = [f"{n} ({i + 1})" for i, n in enumerate(out)]
    return out


def read_runs(paths: list[str | Path], names: str | None = None) -> list[Run]:
    """Read every run (at least two); bad input raises a one-line :class:`GacError`."""
    paths = [Path(p) for p in paths]
    if len(paths) < 2:
        raise ConfigError(
            f"compare needs at least two runs, got {len(paths)}; pass two or more folders written by "
            "`gac-analyze energy --out DIR`"
        )
    labels = run_names(paths, names)
    return [read_run(p, n) for p, n in zip(paths, labels)]
