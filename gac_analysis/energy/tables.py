"""Energy cost tables: picojoules per arithmetic operation and per memory access.

A table is a small YAML file. The bundled ones live in ``gac_analysis/configs/energy/``
(shipped as package data, so they are found by a non-editable install too); the repository
root has ``configs/energy``, a symlink to that folder. Each bundled table gives the 45 nm
numbers of Horowitz (ISSCC 2014, "Computing's energy problem") for one precision, and the
linear SRAM access-energy fit of Lemaire et al. (ICONIP 2022, arXiv:2210.13107).

File layout (all energies in pJ)::

    name: 45nm-fp32
    description: ...
    source: ...                 # full citation
    precision: fp32
    word_bits: 32               # bits of one stored element (weights, potentials, ...)
    units: pJ
    costs: {mac: 4.6, ac: 0.9, add: 0.9, mul: 3.7, compare: 0.9}
    memory:
      sram_fit: {slope_pj_per_bit: 1.09e-5, intercept_pj: 13.2}
      sram_points_pj_per_64bit: {8KB: 10, 32KB: 20, 1MB: 100}   # optional, informational
      dram_pj_per_64bit: 1300
      access_bits: 64

This module only reads numbers; it knows nothing of torch or of models.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gac_analysis.energy.yaml_config import parse_yaml
from gac_analysis.errors import EnergyTableError

__all__ = [
    "COST_KEYS",
    "DEFAULT_TABLE",
    "EnergyTable",
    "available_tables",
    "bundled_tables_dir",
    "load_energy_table",
]

#: Operation cost keys every table must define under ``costs:`` (pJ per operation).
COST_KEYS: tuple[str, ...] = ("mac", "ac", "add", "mul", "compare")

#: The table used when none is named: the SNN literature's E_MAC = 4.6 pJ, E_AC = 0.9 pJ.
DEFAULT_TABLE = "45nm-fp32"

_TOP_KEYS = frozenset({"name", "description", "source", "precision", "word_bits", "units", "costs", "memory"})
_MEMORY_KEYS = frozenset({"sram_fit", "sram_points_pj_per_64bit", "dram_pj_per_64bit", "access_bits"})
_SRAM_FIT_KEYS = frozenset({"slope_pj_per_bit", "intercept_pj"})
_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class EnergyTable:
    """One cost table: pJ per operation and the parameters of the memory-access model.

    ``sram_access_pj(bits)`` is the energy of one access to an SRAM holding ``bits`` bits,
    ``sram_slope_pj_per_bit * bits + sram_intercept_pj`` (Lemaire et al.'s linear fit to
    Horowitz's 8 KB / 32 KB / 1 MB SRAM points; it is extrapolated outside that range).
    """

    name: str
    description: str
    source: str
    precision: str
    word_bits: int
    mac: float
    ac: float
    add: float
    mul: float
    compare: float
    sram_slope_pj_per_bit: float
    sram_intercept_pj: float
    dram_pj_per_access: float
    access_bits: int
    path: str

    def to_dict(self) -> dict:
        """Every field as plain python values (for report provenance)."""
        return asdict(self)

    def sram_access_pj(self, memory_bits):
        """pJ for one access to an SRAM of ``memory_bits`` bits: slope * bits + intercept. ``memory_bits`` is a
        number (a float comes back) or a numpy array of sizes (an array comes back, one cost per size)."""
        if isinstance(memory_bits, np.ndarray):
            bits = memory_bits.astype(np.float64)
            ok = bool(np.isfinite(bits).all() and (bits >= 0).all())
        else:
            bits = float(memory_bits)
            ok = math.isfinite(bits) and bits >= 0
        if not ok:
            raise EnergyTableError(
                f"energy table {self.name!r}: memory size {memory_bits!r} bits is not a finite "
                "non-negative number; pass the memory's size in bits (n_elements * word_bits)"
            )
        return self.sram_slope_pj_per_bit * bits + self.sram_intercept_pj


def bundled_tables_dir() -> Path:
    """The folder holding the bundled tables (inside the installed package)."""
    return Path(__file__).resolve().parent.parent / "configs" / "energy"


def available_tables() -> list[str]:
    """Names of the bundled tables, sorted (e.g. ``["45nm-fp16", "45nm-fp32", ...]``)."""
    folder = bundled_tables_dir()
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.iterdir() if p.suffix in _SUFFIXES and p.is_file())


def _looks_like_path(text: str) -> bool:
    return (
        text.endswith(_SUFFIXES)
        or os.sep in text
        or (os.altsep is not None and os.altsep in text)
        or text.startswith((".", "~"))
    )


def _resolve(name_or_path: str | os.PathLike) -> Path:
    """A bundled name maps to its file; anything path-like is taken as a path."""
    if isinstance(name_or_path, os.PathLike):
        return Path(name_or_path).expanduser()
    if not isinstance(name_or_path, str) or not name_or_path.strip():
        raise EnergyTableError(
            f"energy table {name_or_path!r} is not a table name or path; pass one of "
            f"{', '.join(available_tables())} or the path of a YAML table"
        )
    text = name_or_path.strip()
    if not _looks_like_path(text):
        folder = bundled_tables_dir()
        for suffix in _SUFFIXES:
            candidate = folder / f"{text}{suffix}"
            if candidate.is_file():
                return candidate
        raise EnergyTableError(
            f"unknown energy table {text!r} (looked in {folder}); use one of "
            f"{', '.join(available_tables()) or '(none bundled)'} or the path of a YAML table"
        )
    return Path(text).expanduser()


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _number(value: Any, where: str, path: Path) -> float:
    """A finite, non-negative number, or an EnergyTableError naming ``where`` and the value."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        hint = "a number in pJ"
        if isinstance(value, str):
            try:
                float(value)
            except ValueError:
                pass
            else:  # PyYAML reads 1e-5 (no dot) as a string
                hint = "a number written with a decimal point, e.g. 1.0e-5"
        raise EnergyTableError(
            f"energy table {path}: {where} = {_one_line(repr(value))} is not numeric; set it to {hint}"
        )
    number = float(value)
    if not math.isfinite(number):
        raise EnergyTableError(
            f"energy table {path}: {where} = {value!r} is not finite; set it to a finite number in pJ"
        )
    if number < 0:
        raise EnergyTableError(f"energy table {path}: {where} = {value!r} is negative; energies must be >= 0 pJ")
    return number


def _positive_int(value: Any, where: str, path: Path) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise EnergyTableError(
            f"energy table {path}: {where} = {_one_line(repr(value))} is not a positive integer; "
            "set it to the number of bits (e.g. 32)"
        )
    return int(value)


def _text(data: dict, key: str, path: Path, *, default: str | None = None) -> str:
    if key not in data:
        if default is not None:
            return default
        raise EnergyTableError(f"energy table {path}: key {key!r} is missing; add it (a string)")
    value = data[key]
    if not isinstance(value, str) or not value.strip():
        raise EnergyTableError(
            f"energy table {path}: {key} = {_one_line(repr(value))} is not a non-empty string; set it to text"
        )
    return _one_line(value)


def _mapping(value: Any, where: str, path: Path) -> dict:
    if not isinstance(value, dict):
        raise EnergyTableError(
            f"energy table {path}: {where} is {type(value).__name__}, not a mapping; "
            f"write {where} as 'key: value' lines"
        )
    return value


def _check_keys(data: dict, allowed: frozenset, where: str, path: Path) -> None:
    unknown = sorted(str(k) for k in data if k not in allowed)
    if unknown:
        raise EnergyTableError(
            f"energy table {path}: unknown key(s) {', '.join(unknown)} in {where}; "
            f"allowed: {', '.join(sorted(allowed))}"
        )


def _require(data: dict, key: str, where: str, path: Path, what: str) -> Any:
    if key not in data:
        raise EnergyTableError(f"energy table {path}: {where}{key} is missing; add it ({what})")
    return data[key]


def _read_table_file(path: Path) -> dict:
    """The top-level mapping of a YAML table file (checked keys); :class:`EnergyTableError` otherwise."""
    if not path.is_file():
        raise EnergyTableError(
            f"energy table file {path} does not exist; check the path or use one of {', '.join(available_tables())}"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise EnergyTableError(
            f"energy table file {path} cannot be read ({_one_line(exc)}); check its permissions "
            "and that it is UTF-8 text"
        ) from exc
    data = parse_yaml(text, f"energy table file {path}", EnergyTableError)
    if not isinstance(data, dict):
        raise EnergyTableError(
            f"energy table file {path} holds {type(data).__name__}, not a mapping; "
            "write it as 'key: value' lines (name, precision, word_bits, costs, memory)"
        )
    _check_keys(data, _TOP_KEYS, "the top level", path)
    units = data.get("units", "pJ")
    if units != "pJ":
        raise EnergyTableError(
            f"energy table {path}: units = {_one_line(repr(units))} is not supported; "
            "give every energy in pJ and set units: pJ"
        )
    return data


def _read_costs(data: dict, path: Path) -> dict[str, float]:
    """``costs``: pJ per operation of every :data:`COST_KEYS` entry."""
    costs = _mapping(_require(data, "costs", "", path, f"a mapping of {', '.join(COST_KEYS)}"), "costs", path)
    _check_keys(costs, frozenset(COST_KEYS), "costs", path)
    return {
        key: _number(_require(costs, key, "costs.", path, "pJ per operation"), f"costs.{key}", path)
        for key in COST_KEYS
    }


def _read_memory(data: dict, path: Path) -> dict[str, Any]:
    """``memory``: the SRAM fit (pJ per bit, pJ), DRAM pJ per access and bits per access, as
    :class:`EnergyTable` keyword arguments."""
    memory = _mapping(_require(data, "memory", "", path, "sram_fit, dram_pj_per_64bit, access_bits"), "memory", path)
    _check_keys(memory, _MEMORY_KEYS, "memory", path)
    fit = _mapping(
        _require(memory, "sram_fit", "memory.", path, "slope_pj_per_bit and intercept_pj"), "memory.sram_fit", path
    )
    _check_keys(fit, _SRAM_FIT_KEYS, "memory.sram_fit", path)
    values = {
        "sram_slope_pj_per_bit": _number(
            _require(fit, "slope_pj_per_bit", "memory.sram_fit.", path, "pJ per bit"),
            "memory.sram_fit.slope_pj_per_bit",
            path,
        ),
        "sram_intercept_pj": _number(
            _require(fit, "intercept_pj", "memory.sram_fit.", path, "pJ"), "memory.sram_fit.intercept_pj", path
        ),
        "dram_pj_per_access": _number(
            _require(memory, "dram_pj_per_64bit", "memory.", path, "pJ per access"), "memory.dram_pj_per_64bit", path
        ),
        "access_bits": _positive_int(
            _require(memory, "access_bits", "memory.", path, "bits per access, e.g. 64"), "memory.access_bits", path
        ),
    }
    if "sram_points_pj_per_64bit" in memory:  # informational; checked so typos do not hide
        points = _mapping(memory["sram_points_pj_per_64bit"], "memory.sram_points_pj_per_64bit", path)
        for size, value in points.items():
            _number(value, f"memory.sram_points_pj_per_64bit.{size}", path)
    return values


def load_energy_table(name_or_path: str | os.PathLike = DEFAULT_TABLE) -> EnergyTable:
    """Load a bundled table by name (``"45nm-fp32"``) or a YAML table from a path.

    A string without a path separator and without a ``.yaml``/``.yml`` suffix is a bundled
    name; anything else is a path. Every cost must be a finite, non-negative number;
    ``word_bits`` and ``memory.access_bits`` positive integers; ``units``, when given, ``pJ``;
    no key may appear twice in one mapping.
    Raises :class:`EnergyTableError` (one line: what, where, what to do) otherwise.
    """
    path = _resolve(name_or_path)
    try:
        stat = path.stat()
    except OSError:
        return _parse_table(path, None)  # _read_table_file gives the one-line error
    return _parse_table(path, (stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=32)
def _parse_table(path: Path, file_version: tuple | None) -> EnergyTable:
    """The table in ``path``, parsed once per file version (modification time, size): tables are frozen,
    and every profiling run loads its table (a YAML parse costs milliseconds, a batch-1 forward not many more)."""
    data = _read_table_file(path)
    # the order of the checks below is the order of the error messages a user meets
    name = _text(data, "name", path, default=path.stem)
    description = _text(data, "description", path) if "description" in data else ""
    source = _text(data, "source", path) if "source" in data else ""
    precision = _text(data, "precision", path)
    word_bits = _positive_int(_require(data, "word_bits", "", path, "bits per element, e.g. 32"), "word_bits", path)
    return EnergyTable(
        name=name,
        description=description,
        source=source,
        precision=precision,
        word_bits=word_bits,
        path=str(path.absolute()),
        **_read_costs(data, path),
        **_read_memory(data, path),
    )


def table_label(table: dict | None) -> str:
    """How a report's energy table (``energy.table``, :meth:`EnergyTable.to_dict`) is named to a reader:
    its name when it is the bundled table of that name (every constant equal), else its name and the
    file it came from (a user's table may keep a bundled name with other constants)."""
    if not isinstance(table, dict) or not table.get("name"):
        return "?"
    name = str(table["name"])
    if name in available_tables():
        bundled = load_energy_table(name).to_dict()
        if all(table.get(k) == v for k, v in bundled.items() if k != "path"):
            return name
    return f"{name} (from {table.get('path') or 'an unnamed file'})"
