"""Energy cost tables: bundled Horowitz presets, custom YAML tables, validation errors."""

from __future__ import annotations

import ast
import json
from dataclasses import fields
from pathlib import Path

import pytest
import yaml

from gac_analysis.energy import tables as tables_mod
from gac_analysis.energy.tables import (
    COST_KEYS,
    EnergyTable,
    available_tables,
    bundled_tables_dir,
    load_energy_table,
)
from gac_analysis.errors import EnergyTableError, GacError

REPO = Path(__file__).resolve().parents[1]
BUNDLED = ["45nm-fp16", "45nm-fp32", "45nm-int32", "45nm-int8"]

# Horowitz, ISSCC 2014, 45 nm, pJ per operation: (add, mul, mac, word_bits)
HOROWITZ = {
    "45nm-fp32": (0.9, 3.7, 4.6, 32),
    "45nm-fp16": (0.4, 1.1, 1.5, 16),
    "45nm-int8": (0.03, 0.2, 0.23, 8),
    "45nm-int32": (0.1, 3.1, 3.2, 32),
}


def _valid_doc() -> dict:
    return {
        "name": "custom-7nm",
        "description": "a made-up table for tests",
        "source": "nobody, nowhere",
        "precision": "int16",
        "word_bits": 16,
        "units": "pJ",
        "costs": {"mac": 0.5, "ac": 0.05, "add": 0.05, "mul": 0.45, "compare": 0.05},
        "memory": {
            "sram_fit": {"slope_pj_per_bit": 2.0e-5, "intercept_pj": 5.0},
            "sram_points_pj_per_64bit": {"8KB": 4, "32KB": 8},
            "dram_pj_per_64bit": 640,
            "access_bits": 64,
        },
    }


def _write(tmp_path: Path, doc, name: str = "table.yaml") -> Path:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc), encoding="utf-8")
    return path


def _error(tmp_path: Path, doc) -> str:
    path = _write(tmp_path, doc)
    with pytest.raises(EnergyTableError) as info:
        load_energy_table(str(path))
    message = str(info.value)
    assert "\n" not in message, "error messages are one line"
    assert str(path) in message, "error messages name the file"
    return message


# --------------------------------------------------------------------------- bundled tables


def test_available_tables_lists_the_four_presets():
    assert available_tables() == BUNDLED


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_table_has_horowitz_numbers(name):
    add, mul, mac, bits = HOROWITZ[name]
    table = load_energy_table(name)
    assert table.name == name
    assert table.precision == name.split("-")[1]
    assert table.word_bits == bits
    assert (table.add, table.mul, table.mac) == (add, mul, mac)
    assert table.ac == add and table.compare == add  # ac and compare are priced as an add
    assert table.mac == pytest.approx(table.add + table.mul, rel=1e-12)
    assert table.sram_slope_pj_per_bit == 1.09e-5
    assert table.sram_intercept_pj == 13.2
    assert table.dram_pj_per_access == 1300.0
    assert table.access_bits == 64
    assert "Horowitz" in table.source and "ISSCC" in table.source and "2014" in table.source
    assert "2210.13107" in table.source
    assert Path(table.path).name == f"{name}.yaml"


def test_specific_horowitz_values():
    fp32 = load_energy_table("45nm-fp32")
    assert (fp32.mac, fp32.ac) == (4.6, 0.9)  # the SNN literature's E_MAC / E_AC pair
    assert load_energy_table("45nm-int8").add == 0.03
    assert load_energy_table("45nm-fp16").mul == 1.1
    int32 = load_energy_table("45nm-int32")
    assert (int32.add, int32.mul) == (0.1, 3.1)  # Lemaire et al.'s defaults


def test_default_table_is_fp32():
    assert load_energy_table() == load_energy_table("45nm-fp32")


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_yaml_carries_the_documented_memory_section(name):
    doc = yaml.safe_load((bundled_tables_dir() / f"{name}.yaml").read_text())
    assert doc["units"] == "pJ"
    assert doc["memory"]["sram_points_pj_per_64bit"] == {"8KB": 10, "32KB": 20, "1MB": 100}
    assert doc["memory"]["sram_fit"] == {"slope_pj_per_bit": 1.09e-5, "intercept_pj": 13.2}
    assert doc["memory"]["dram_pj_per_64bit"] == 1300
    assert set(doc["costs"]) == set(COST_KEYS)


def test_bundled_tables_live_in_the_package_and_repo_root_links_to_them():
    folder = bundled_tables_dir()
    assert folder == Path(tables_mod.__file__).resolve().parent.parent / "configs" / "energy"
    root = REPO / "configs" / "energy"
    assert root.is_symlink()
    assert Path(root.readlink()).as_posix() == "../gac_analysis/configs/energy"  # relative link
    assert root.resolve() == folder.resolve()
    assert sorted(p.stem for p in root.glob("*.yaml")) == BUNDLED


def test_pyproject_ships_the_tables_as_package_data():
    text = (REPO / "pyproject.toml").read_text()
    assert '"configs/**/*.yaml"' in text


def test_load_bundled_table_by_path_through_the_symlink():
    by_path = load_energy_table(str(REPO / "configs" / "energy" / "45nm-int8.yaml"))
    by_name = load_energy_table("45nm-int8")
    assert by_path.mac == by_name.mac and by_path.name == by_name.name


# --------------------------------------------------------------------------- custom tables


def test_custom_table_from_yaml(tmp_path):
    path = _write(tmp_path, _valid_doc(), "mine.yaml")
    for arg in (str(path), path):
        table = load_energy_table(arg)
        assert table.name == "custom-7nm"
        assert table.precision == "int16" and table.word_bits == 16
        assert (table.mac, table.ac, table.add, table.mul, table.compare) == (0.5, 0.05, 0.05, 0.45, 0.05)
        assert table.sram_slope_pj_per_bit == 2.0e-5 and table.sram_intercept_pj == 5.0
        assert table.dram_pj_per_access == 640.0 and table.access_bits == 64
        assert table.path == str(path.absolute())


def test_custom_table_name_defaults_to_file_stem_and_text_fields_are_optional(tmp_path):
    doc = _valid_doc()
    for key in ("name", "description", "source", "units"):
        del doc[key]
    table = load_energy_table(str(_write(tmp_path, doc, "stemmed.yml")))
    assert table.name == "stemmed"
    assert table.description == "" and table.source == ""


def test_integer_costs_are_accepted_as_floats(tmp_path):
    doc = _valid_doc()
    doc["costs"]["mul"] = 3
    table = load_energy_table(str(_write(tmp_path, doc)))
    assert table.mul == 3.0 and isinstance(table.mul, float)


# --------------------------------------------------------------------------- validation errors


def test_unknown_name_lists_the_available_tables():
    with pytest.raises(EnergyTableError) as info:
        load_energy_table("45nm-fp64")
    message = str(info.value)
    assert "45nm-fp64" in message and "\n" not in message
    for name in BUNDLED:
        assert name in message
    assert isinstance(info.value, GacError)


def test_missing_file_is_named(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(EnergyTableError) as info:
        load_energy_table(str(path))
    assert str(path) in str(info.value) and "does not exist" in str(info.value)


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    message = _error(tmp_path, "name: x\ncosts: {mac: 1.0, ac: [\n")
    assert "not valid YAML" in message and "line" in message


@pytest.mark.parametrize("text", ["- 1\n- 2\n", "just a string\n", ""])
def test_document_that_is_not_a_mapping(tmp_path, text):
    assert "not a mapping" in _error(tmp_path, text)


@pytest.mark.parametrize("key", COST_KEYS)
def test_missing_cost_key_is_named(tmp_path, key):
    doc = _valid_doc()
    del doc["costs"][key]
    message = _error(tmp_path, doc)
    assert f"costs.{key}" in message and "missing" in message


@pytest.mark.parametrize(
    "value, phrase",
    [
        ("cheap", "not numeric"),
        (None, "not numeric"),
        ([1, 2], "not numeric"),
        (True, "not numeric"),
        (-0.5, "negative"),
        (float("inf"), "not finite"),
        (float("nan"), "not finite"),
    ],
)
def test_bad_cost_value_names_key_and_value(tmp_path, value, phrase):
    doc = _valid_doc()
    doc["costs"]["add"] = value
    message = _error(tmp_path, doc)
    assert "costs.add" in message and phrase in message
    assert repr(value) in message or str(value) in message


def test_exponent_without_dot_gets_a_hint(tmp_path):
    text = yaml.safe_dump(_valid_doc()).replace("2.0e-05", "2e-5")
    assert "2e-5" in text
    message = _error(tmp_path, text)
    assert "memory.sram_fit.slope_pj_per_bit" in message and "decimal point" in message


@pytest.mark.parametrize("value", [0, -8, 3.5, "32", True, None])
def test_word_bits_must_be_a_positive_int(tmp_path, value):
    doc = _valid_doc()
    doc["word_bits"] = value
    message = _error(tmp_path, doc)
    assert "word_bits" in message and "positive integer" in message


def test_missing_word_bits(tmp_path):
    doc = _valid_doc()
    del doc["word_bits"]
    assert "word_bits" in _error(tmp_path, doc)


@pytest.mark.parametrize(
    "mutate, key",
    [
        (lambda d: d.pop("costs"), "costs"),
        (lambda d: d.update(costs=[1, 2]), "costs"),
        (lambda d: d.pop("memory"), "memory"),
        (lambda d: d["memory"].pop("sram_fit"), "memory.sram_fit"),
        (lambda d: d["memory"]["sram_fit"].pop("intercept_pj"), "memory.sram_fit.intercept_pj"),
        (lambda d: d["memory"].pop("dram_pj_per_64bit"), "memory.dram_pj_per_64bit"),
        (lambda d: d["memory"].update(dram_pj_per_64bit=-1), "memory.dram_pj_per_64bit"),
        (lambda d: d["memory"].update(access_bits=0), "memory.access_bits"),
        (
            lambda d: d["memory"]["sram_points_pj_per_64bit"].update({"1MB": "lots"}),
            "memory.sram_points_pj_per_64bit.1MB",
        ),
        (lambda d: d.pop("precision"), "precision"),
        (lambda d: d.update(units="nJ"), "units"),
        (lambda d: d.update(cost={"mac": 1.0}), "cost"),
        (lambda d: d["costs"].update(mull=1.0), "mull"),
    ],
)
def test_other_structural_errors_name_the_key(tmp_path, mutate, key):
    doc = _valid_doc()
    mutate(doc)
    assert key in _error(tmp_path, doc)


# --------------------------------------------------------------------------- SRAM fit, to_dict


def test_sram_access_pj_is_the_linear_fit():
    table = load_energy_table("45nm-fp32")
    # 8 KB  =    65 536 bits: 1.09e-5 * 65536   + 13.2 =   0.7143424 + 13.2 =  13.9143424 (Horowitz: 10)
    # 32 KB =   262 144 bits: 1.09e-5 * 262144  + 13.2 =   2.8573696 + 13.2 =  16.0573696 (Horowitz: 20)
    # 1 MB  = 8 388 608 bits: 1.09e-5 * 8388608 + 13.2 =  91.4358272 + 13.2 = 104.6358272 (Horowitz: 100)
    assert table.sram_access_pj(65536) == pytest.approx(13.9143424, rel=1e-12)
    assert table.sram_access_pj(262144) == pytest.approx(16.0573696, rel=1e-12)
    assert table.sram_access_pj(8388608) == pytest.approx(104.6358272, rel=1e-12)
    assert table.sram_access_pj(0) == 13.2
    # the fit follows the trend of the SRAM points: within a factor of 1.5 of each
    for bits, horowitz in ((65536, 10), (262144, 20), (8388608, 100)):
        assert horowitz / 1.5 <= table.sram_access_pj(bits) <= horowitz * 1.5


@pytest.mark.parametrize("bits", [-1, float("nan"), float("inf")])
def test_sram_access_pj_rejects_bad_sizes(bits):
    with pytest.raises(EnergyTableError):
        load_energy_table().sram_access_pj(bits)


@pytest.mark.parametrize("name", BUNDLED)
def test_to_dict_round_trip(name):
    table = load_energy_table(name)
    data = table.to_dict()
    assert list(data) == [f.name for f in fields(EnergyTable)]
    assert EnergyTable(**data) == table
    assert EnergyTable(**json.loads(json.dumps(data))) == table  # JSON-safe provenance


def test_to_dict_of_custom_table_round_trips_through_yaml(tmp_path):
    table = load_energy_table(str(_write(tmp_path, _valid_doc())))
    assert EnergyTable(**yaml.safe_load(yaml.safe_dump(table.to_dict()))) == table


# --------------------------------------------------------------------------- no torch


def test_energy_package_imports_no_torch():
    allowed_roots = {
        "__future__",
        "dataclasses",
        "functools",
        "math",
        "numbers",
        "os",
        "pathlib",
        "typing",
        "numpy",
        "pandas",
        "yaml",
        "gac_analysis",
    }
    for source in sorted(Path(tables_mod.__file__).parent.glob("*.py")):
        tree = ast.parse(source.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for module in names:
                assert module.split(".")[0] in allowed_roots, f"{source.name} imports {module}"
                if module.startswith("gac_analysis."):
                    assert module.split(".")[1] in {"energy", "errors"}, f"{source.name} imports {module}"


def test_a_table_is_named_with_its_file_unless_it_is_the_bundled_one(tmp_path):
    """A user's file may keep a bundled name with other constants: the label then names the file, so a
    summary never calls a table with E_MAC = 0 '45nm-fp32'."""
    from gac_analysis.energy.tables import table_label

    bundled = load_energy_table("45nm-fp32")
    assert table_label(bundled.to_dict()) == "45nm-fp32"
    doc = yaml.safe_load(Path(bundled.path).read_text())
    doc["costs"]["mac"] = 0.0
    mine = _write(tmp_path, doc, "fp32_no_macs.yaml")
    assert table_label(load_energy_table(mine).to_dict()) == f"45nm-fp32 (from {mine.absolute()})"
    copy = _write(tmp_path, yaml.safe_load(Path(bundled.path).read_text()), "copy.yaml")
    assert table_label(load_energy_table(copy).to_dict()) == "45nm-fp32"  # the same constants: the same table
    assert table_label(load_energy_table(_write(tmp_path, _valid_doc())).to_dict()).startswith("custom-7nm (from ")
    assert table_label(None) == "?"
