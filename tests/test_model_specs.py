"""``--model SPEC``: parsing, building (zoo, a user's module or file, embedded), state_dicts, CLI errors."""

from __future__ import annotations

import json
import re
import shlex
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from gac_analysis.cli.main import app
from gac_analysis.errors import CheckpointError
from gac_analysis.models.specs import (
    EMBEDDED,
    DirectEncodingOverTime,
    ModelSpecError,
    build_from_spec,
    parse_model_kwargs,
    parse_model_spec,
    zoo_names,
)
from tests.zoo_fixtures import install_torchvision_stand_in

runner = CliRunner()
ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "my_snn.py"
NOTES = ("built ", "using the embedded ")


def error_line(result) -> str:
    """The one ``error:`` line of a failed run; besides it only the 'built ...' / 'using ...' note may appear."""
    text = result.output.strip()
    assert "Traceback" not in text, text
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith(NOTES)]
    assert len(lines) == 1 and lines[0].startswith("error:"), text
    return lines[0]


def state_equal(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ---- parsing ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, kind, target, factory",
    [
        ("default", "embedded", "default", None),
        ("default-direct", "embedded", "default-direct", None),
        ("spikingjelly:ms_resnet18", "spikingjelly", "ms_resnet18", None),
        ("spikingjelly:parametric_lif_net.CIFAR10Net", "spikingjelly", "parametric_lif_net.CIFAR10Net", None),
        ("mypkg.nets:build", "module", "mypkg.nets", "build"),
        ("examples/my_snn.py:build", "file", "examples/my_snn.py", "build"),
        ("/abs/dir/net.py:Net", "file", "/abs/dir/net.py", "Net"),
    ],
)
def test_parse_valid_specs(text, kind, target, factory):
    spec = parse_model_spec(text)
    assert (spec.kind, spec.target, spec.factory) == (kind, target, factory)


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "--model is empty"),
        ("resnet", "unknown model spec"),
        ("mypkg.nets:", "is not a Python name"),
        ("mypkg.nets:1x", "is not a Python name"),
        ("my-pkg:build", "neither a module name"),
        ("spikingjelly:a.b.c", "is not a zoo builder name"),
    ],
)
def test_parse_invalid_specs(text, message):
    with pytest.raises(ModelSpecError, match=message):
        parse_model_spec(text)


def test_parse_kwargs():
    assert parse_model_kwargs(None) == {} and parse_model_kwargs("  ") == {}
    assert parse_model_kwargs('{"T": 4, "num_classes": 10}') == {"T": 4, "num_classes": 10}
    with pytest.raises(ModelSpecError, match="not valid JSON"):
        parse_model_kwargs("{T: 4}")
    with pytest.raises(ModelSpecError, match="must be a JSON object"):
        parse_model_kwargs("[4, 10]")


# ---- the zoo ------------------------------------------------------------------------------------------------


def test_zoo_names_are_the_builders_here():
    names = zoo_names()
    for name in (
        "ms_resnet18",
        "ms_resnet34",
        "att_ms_resnet18",
        "spikformer_cifar10",
        "spikformer_ti",
        "sdt_8_384",
        "qkformer_10_384",
        "maxformer_cifar",
        "CIFAR10Net",
    ):
        assert name in names
    assert "MSResNet" not in names and "Spikformer" not in names  # classes of the transformer zoo are not builders


def test_zoo_build_is_seeded_and_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = build_from_spec("spikingjelly:spikformer_cifar10", kwargs={"T": 2})
    assert torch.equal(torch.get_rng_state(), before)
    b = build_from_spec("spikingjelly:spikformer_cifar10", kwargs={"T": 2})
    c = build_from_spec("spikingjelly:spikformer_cifar10", kwargs={"T": 2}, seed=1)
    assert type(a).__name__ == "Spikformer" and a.T == 2 and not a.training
    assert state_equal(a, b) and not state_equal(a, c)
    assert a.gac_model_spec["builder"] == "spikingjelly.activation_based.model.spikformer.spikformer_cifar10"
    assert a.gac_model_spec["kwargs"] == {"T": 2} and a.gac_model_spec["init_seed"] == 0


def test_T_reaches_the_builder_once():
    assert build_from_spec("spikingjelly:ms_resnet18", kwargs={"num_classes": 10}, T=3).T == 3
    with pytest.raises(ModelSpecError, match="--T 3 contradicts T=2"):
        build_from_spec("spikingjelly:ms_resnet18", kwargs={"T": 2}, T=3)


def test_zoo_names_and_defaults():
    m = build_from_spec("spikingjelly:parametric_lif_net.CIFAR10Net", kwargs={"channels": 8}, T=2)
    assert isinstance(m, DirectEncodingOverTime) and m.T == 2 and m.step_mode == "s"
    assert type(m.net).__name__ == "CIFAR10Net"
    assert m.gac_model_spec["kwargs"]["spiking_neuron"].endswith("ParametricLIFNode")
    assert "T=2 steps" in m.gac_model_spec["time_loop"]
    lif = build_from_spec("spikingjelly:CIFAR10Net", kwargs={"channels": 8, "spiking_neuron": "LIFNode"})
    assert {type(n).__name__ for n in lif.modules() if "Node" in type(n).__name__} == {"LIFNode"}
    with pytest.raises(ModelSpecError, match="spiking_neuron 'Nope' is not a neuron class"):
        build_from_spec("spikingjelly:CIFAR10Net", kwargs={"spiking_neuron": "Nope"})
    with pytest.raises(ModelSpecError, match="did you mean spikformer_cifar10"):
        build_from_spec("spikingjelly:spikformer_cifar")
    with pytest.raises(ModelSpecError, match="'nozoo' is not a SpikingJelly zoo module"):
        build_from_spec("spikingjelly:nozoo.x")
    with pytest.raises(ModelSpecError, match="ms_resnet has no builder 'MSResNet'"):
        build_from_spec("spikingjelly:ms_resnet.MSResNet")


def test_torchvision_families_say_so_in_one_line():
    try:
        import torchvision  # noqa: F401

        pytest.skip("torchvision imports here")
    except Exception:  # noqa: BLE001
        pass
    for name in ("sew_resnet18", "spiking_resnet18", "spiking_vgg11_bn"):
        with pytest.raises(ModelSpecError, match="imports torchvision, which fails to import here") as e:
            build_from_spec(f"spikingjelly:{name}")
        assert "\n" not in str(e.value)


def test_torchvision_families_with_a_stand_in(monkeypatch):
    install_torchvision_stand_in(monkeypatch)
    sew = build_from_spec("spikingjelly:sew_resnet18", kwargs={"num_classes": 10}, T=2)
    assert type(sew.net).__name__ == "SEWResNet" and sew.net.layer1[0].cnf == "ADD"
    assert {type(n).__name__ for n in sew.modules() if "Node" in type(n).__name__} == {"IFNode"}
    vgg = build_from_spec("spikingjelly:spiking_vgg11_bn", kwargs={"num_classes": 10}, T=2)
    assert type(vgg.net).__name__ == "SpikingVGG"
    with pytest.raises(ModelSpecError, match="sew_resnet has no builder 'sew_resnet7'"):
        build_from_spec("spikingjelly:sew_resnet7")


def test_direct_encoding_over_time_matches_a_hand_loop():
    from spikingjelly.activation_based import functional

    m = build_from_spec("spikingjelly:CIFAR10Net", kwargs={"channels": 4}, T=3)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = m(x)
        functional.reset_net(m)
        hand = torch.stack([m.net(x) for _ in range(3)])
    assert out.shape == (3, 2, 10) and torch.equal(out, hand)


# ---- a user's factory ---------------------------------------------------------------------------------------

USER_MODULE = """
import torch
from torch import nn
from spikingjelly.activation_based import neuron

class Net(nn.Module):
    def __init__(self, T=2, width=4):
        super().__init__()
        self.T = T
        self.conv = nn.Conv2d(3, width, 3)
        self.lif = neuron.LIFNode(step_mode="s")
    def forward(self, x):
        return torch.stack([self.lif(self.conv(x)) for _ in range(self.T)])

def build(**kw):
    return Net(**kw)

def broken(**kw):
    raise ValueError("no such width")

def not_a_model(**kw):
    return {"weights": 1}

def exits(**kw):
    import sys
    sys.exit(0)

NOT_CALLABLE = 3
"""


@pytest.fixture
def user_pkg(tmp_path, monkeypatch):
    pkg = tmp_path / "userpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "nets.py").write_text(USER_MODULE)
    (pkg / "bad.py").write_text("import torch\nraise RuntimeError('bad import line')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [n for n in sys.modules if n == "userpkg" or n.startswith("userpkg.")]:
        del sys.modules[name]


def test_user_module_and_file(user_pkg):
    m = build_from_spec("userpkg.nets:Net", kwargs={"width": 5}, T=3)  # a class is a factory; --T reaches its T
    assert type(m).__name__ == "Net" and m.T == 3 and m.conv.out_channels == 5
    with pytest.raises(ModelSpecError, match="the built model has T=2 but --T 3 was given"):
        build_from_spec("userpkg.nets:build", T=3)  # build(**kw) does not name T: --T cannot reach it
    f = build_from_spec(f"{user_pkg / 'userpkg' / 'nets.py'}:Net")
    assert type(f).__name__ == "Net" and f.T == 2
    ex = build_from_spec(f"{EXAMPLE}:build", kwargs={"T": 2, "channels": 8})
    assert type(ex).__name__ == "MySNN" and ex.T == 2
    # a file's folder is on sys.path only while the file imports and its factory runs
    assert str(user_pkg / "userpkg") not in sys.path and str(EXAMPLE.parent) not in sys.path


def test_a_package_in_the_current_folder_imports_as_with_python_m(tmp_path, monkeypatch):
    """A console script does not put the current folder on sys.path: the spec's import does, for the
    import and the factory only (a user running from the folder that holds their package)."""
    pkg = tmp_path / "cwdpkg_gac"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "nets.py").write_text(USER_MODULE)
    monkeypatch.chdir(tmp_path)
    path_before = list(sys.path)
    try:
        m = build_from_spec("cwdpkg_gac.nets:Net", kwargs={"width": 4}, T=2)
        assert type(m).__name__ == "Net" and m.conv.out_channels == 4
        assert sys.path == path_before
    finally:
        for name in [n for n in sys.modules if n.startswith("cwdpkg_gac")]:
            del sys.modules[name]
    monkeypatch.chdir(ROOT)
    with pytest.raises(ModelSpecError, match="in the current folder or the installed packages.*PYTHONPATH"):
        build_from_spec("cwdpkg_gac.nets:Net")


@pytest.mark.parametrize(
    "spec, kwargs, message",
    [
        ("userpkg.nope:build", {}, "cannot import userpkg.nope (no module named 'userpkg.nope' in the current folder"),
        ("nopkg_xyz.nets:build", {}, "no module named 'nopkg_xyz'"),
        ("userpkg.bad:build", {}, "importing userpkg.bad raised RuntimeError: bad import line"),
        ("userpkg.nets:missing", {}, "userpkg.nets has no 'missing'; it defines"),
        ("userpkg.nets:NOT_CALLABLE", {}, "has a non-callable 'NOT_CALLABLE'"),
        ("userpkg.nets:broken", {}, "raised ValueError: no such width"),
        ("userpkg.nets:build", {"depth": 3}, "raised TypeError"),
        ("userpkg.nets:not_a_model", {}, "returned a dict, not a torch.nn.Module"),
        ("userpkg.nets:exits", {}, "userpkg.nets:exits(**{}) raised SystemExit: 0"),
        ("no/such/file.py:build", {}, "file not found"),
    ],
)
def test_user_factory_errors_are_one_line(user_pkg, spec, kwargs, message):
    with pytest.raises(ModelSpecError) as e:
        build_from_spec(spec, kwargs=kwargs)
    assert message in str(e.value) and "\n" not in str(e.value)


# ---- state_dicts ----------------------------------------------------------------------------------------------


def test_state_dict_loads_strictly(tmp_path, user_pkg):
    src = build_from_spec("userpkg.nets:build", seed=7)
    plain, wrapped, prefixed = tmp_path / "plain.pt", tmp_path / "wrapped.pt", tmp_path / "prefixed.pt"
    torch.save(src.state_dict(), plain)
    torch.save({"state_dict": src.state_dict(), "epoch": 3}, wrapped)
    torch.save({f"module.{k}": v for k, v in src.state_dict().items()}, prefixed)
    for path in (plain, wrapped, prefixed):
        m = build_from_spec("userpkg.nets:build", checkpoint=path, seed=0)
        assert state_equal(m, src)
        assert m.gac_model_spec["checkpoint"]["path"] == str(path)
        assert len(m.gac_model_spec["checkpoint"]["sha256"]) == 64
    with pytest.raises(
        CheckpointError,
        match=r"2 of another shape \(first 'conv.weight': file \[4, 3, 3, 3\], "
        r"model \[6, 3, 3, 3\]\)",
    ):
        build_from_spec("userpkg.nets:build", kwargs={"width": 6}, checkpoint=plain)
    torch.save({"conv.weight": src.conv.weight, "extra": torch.zeros(1)}, tmp_path / "partial.pt")
    with pytest.raises(CheckpointError, match="1 missing \\(first 'conv.bias'\\), 1 unexpected \\(first 'extra'\\)"):
        build_from_spec("userpkg.nets:build", checkpoint=tmp_path / "partial.pt")
    torch.save({"net": src}, tmp_path / "pickled.pt")
    with pytest.raises(CheckpointError, match="refusing to load"):
        build_from_spec("userpkg.nets:build", checkpoint=tmp_path / "pickled.pt")
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        build_from_spec("userpkg.nets:build", checkpoint=tmp_path / "none.pt")


# ---- embedded models ------------------------------------------------------------------------------------------


def test_default_is_the_embedded_checkpoint():
    m = build_from_spec("default")
    assert m.coding == "gac" and m.T == 4 and m.checkpoint_info.path == str(EMBEDDED["default"])
    with pytest.raises(ModelSpecError, match="takes no --model-kwargs"):
        build_from_spec("default", kwargs={"T": 4})
    with pytest.raises(ModelSpecError, match="pass either a CKPT or --model default"):
        build_from_spec("default", checkpoint=EMBEDDED["default"])


def test_default_direct():
    path = EMBEDDED["default-direct"]
    if not path.exists():
        with pytest.raises(ModelSpecError, match="default-direct: the embedded direct-coding twin"):
            build_from_spec("default-direct")
        pytest.skip(f"{path.name} is not trained yet: only its absence is checked")
    gac, direct = build_from_spec("default"), build_from_spec("default-direct")
    assert direct.coding == "direct" and direct.T == gac.T and direct.arch == gac.arch
    assert direct.width == gac.width and direct.num_classes == gac.num_classes


# ---- the CLI ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "spikingjelly:nonexistent_net"], "no such builder in SpikingJelly's zoo"),
        (["--model", "nopkg_xyz.nets:build"], "cannot import nopkg_xyz.nets"),
        (["--model", f"{EXAMPLE}:build", "--model-kwargs", '{"depth": 3}'], "raised TypeError"),
        (["--model", f"{EXAMPLE}:MySNN_nope"], "has no 'MySNN_nope'"),
        (["--model", f"{EXAMPLE}:build", "--model-kwargs", "{T: 4}"], "--model-kwargs is not valid JSON"),
        (["--model-kwargs", '{"T": 4}'], "--model-kwargs needs --model"),
        (["--model", "default", "--model-kwargs", '{"T": 4}'], "takes no --model-kwargs"),
    ],
)
@pytest.mark.parametrize("command", ["energy", "observe", "info"])
def test_cli_bad_specs_exit_2_one_line(tmp_path, command, args, message):
    out = ["--out", str(tmp_path / "o")] if command != "info" else []
    result = runner.invoke(app, [command, *args, *out])
    assert result.exit_code == 2, result.output
    assert message in error_line(result)
    assert not (tmp_path / "o").exists()


def test_cli_mismatched_state_dict_and_non_module(tmp_path):
    torch.save(build_from_spec(f"{EXAMPLE}:build", kwargs={"channels": 8}).state_dict(), tmp_path / "w.pt")
    for command in ("energy", "info"):
        out = ["--out", str(tmp_path / "o")] if command == "energy" else []
        result = runner.invoke(app, [command, str(tmp_path / "w.pt"), "--model", f"{EXAMPLE}:build", *out])
        assert result.exit_code == 2 and "does not fit --model" in error_line(result)
    (tmp_path / "f.py").write_text("def build():\n    return 42\n")
    result = runner.invoke(app, ["info", "--model", f"{tmp_path / 'f.py'}:build"])
    assert result.exit_code == 2 and "returned a int, not a torch.nn.Module" in error_line(result)
    assert not (tmp_path / "o").exists()


def test_cli_info_on_specs(tmp_path):
    result = runner.invoke(app, ["info", "--model", "spikingjelly:spikformer_cifar10", "--model-kwargs", '{"T": 2}'])
    assert result.exit_code == 0, result.output
    for expected in ("spikformer_cifar10", "Spikformer", "LIFNode", "9,310,906", "seeded with 0"):
        assert expected in result.output
    weights = tmp_path / "w.pt"
    torch.save(build_from_spec(f"{EXAMPLE}:build", kwargs={"channels": 8}).state_dict(), weights)
    result = runner.invoke(
        app, ["info", str(weights), "--model", f"{EXAMPLE}:build", "--model-kwargs", '{"channels": 8}']
    )
    assert result.exit_code == 0, result.output
    assert "MySNN" in result.output and str(weights) in result.output.replace("\n", "")
    result = runner.invoke(app, ["info", "--model", "spikingjelly:CIFAR10Net", "--num-classes", "10"])
    assert result.exit_code == 2 and "--arch / --num-classes check checkpoints" in error_line(result)
    result = runner.invoke(app, ["info", "--model", "default"])
    assert result.exit_code == 0 and "msresnet18-cifar" in result.output and "792,874" in result.output


@pytest.mark.parametrize("seeded", [[], ["--seeded-gac"]])
@pytest.mark.parametrize("spec", [f"{EXAMPLE}:build", "spikingjelly:CIFAR10Net"])
def test_cli_observe_is_for_gac_ms_resnets(tmp_path, spec, seeded):
    """Another architecture is refused in one line, also with --seeded-gac (which seeds a GAC encoder on
    this project's MS-ResNet stem, and so cannot apply to it)."""
    result = runner.invoke(app, ["observe", "--model", spec, *seeded, "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "not a GAC-MS-ResNet of this project" in error_line(result)
    assert "gac-analyze energy" in error_line(result)
    assert not (tmp_path / "o").exists()


#: Every zoo model the issue names, as the CLI builds it (small widths where the builder allows), and T.
ZOO_CLI = [
    ("ms_resnet18", '{"num_classes": 10}'),
    ("ms_resnet34", '{"num_classes": 10}'),
    ("att_ms_resnet18", '{"num_classes": 10}'),
    ("spikformer_cifar10", "{}"),
    ("spikformer_ti", '{"num_classes": 10, "img_size_h": 32, "img_size_w": 32}'),
    ("sdt_8_384", '{"num_classes": 10}'),
    ("qkformer_10_384", '{"num_classes": 10}'),
    ("maxformer_cifar", '{"num_classes": 10}'),
    ("CIFAR10Net", '{"channels": 16}'),
    ("sew_resnet18", '{"num_classes": 10}'),
    ("spiking_resnet18", '{"num_classes": 10}'),
    ("spiking_vgg11_bn", '{"num_classes": 10}'),
]


@pytest.mark.parametrize("name, kwargs", ZOO_CLI, ids=[n for n, _ in ZOO_CLI])
def test_cli_energy_on_every_zoo_model(tmp_path, monkeypatch, name, kwargs):
    if name.startswith(("sew_", "spiking_")):
        install_torchvision_stand_in(monkeypatch)
    out = tmp_path / "run"
    result = runner.invoke(
        app,
        [
            "energy",
            "--model",
            f"spikingjelly:{name}",
            "--model-kwargs",
            kwargs,
            "--T",
            "2",
            "--data",
            "random",
            "--num-images",
            "2",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "0 unsupported" in result.output
    report = json.loads((out / "report.json").read_text())
    assert report["coverage"]["unsupported_calls"] == 0 and report["unsupported"] == []
    assert report["coverage"]["counted_calls"] > 0
    assert report["num_images"] == 2 and report["provenance"]["T"] == 2
    spec = report["provenance"]["model"]["spec"]
    assert spec["spec"] == f"spikingjelly:{name}" and spec["init_seed"] == 0
    assert report["lif_sites"], "every zoo model has neuron layers"


def test_cli_energy_on_the_example_file(tmp_path, monkeypatch):
    """The command of examples/my_snn.py and docs/profile_your_snn.md (run from the repository root)."""
    monkeypatch.chdir(ROOT)
    out = tmp_path / "my_snn"
    result = runner.invoke(
        app,
        [
            "energy",
            "--model",
            "examples/my_snn.py:build",
            "--model-kwargs",
            '{"T": 4, "channels": 16}',
            "--data",
            "digits",
            "--num-images",
            "8",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["coverage"]["unsupported_calls"] == 0
    assert report["provenance"]["T"] == 4 and report["provenance"]["data"]["source"] == "digits"
    assert {s["name"] for s in report["lif_sites"]} >= {"stem.2", "stage1.2", "stage2.2"}
    assert "<model>:add" in {row["name"] for row in report["layers"]}


def _doc_blocks(lang: str) -> list[str]:
    text = (ROOT / "docs" / "profile_your_snn.md").read_text()
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


def test_profile_your_snn_doc_runs(tmp_path, monkeypatch):
    """Every ``sh`` command and every ``python`` block of docs/profile_your_snn.md runs as written (outputs
    redirected to a temporary folder); ``text`` blocks need the reader's own files and are not run."""
    monkeypatch.chdir(ROOT)
    commands = [ln for block in _doc_blocks("sh") for ln in block.splitlines() if ln.startswith("gac-analyze ")]
    assert len(commands) == 4
    for i, line in enumerate(commands):
        argv = shlex.split(line)[1:]
        if "--out" in argv:
            argv[argv.index("--out") + 1] = str(tmp_path / f"run{i}")
        result = runner.invoke(app, argv)
        assert result.exit_code == 0, (line, result.output)
        if argv[0] == "energy":
            assert "0 unsupported" in result.output
            assert json.loads((tmp_path / f"run{i}" / "report.json").read_text())["unsupported"] == []
    namespace: dict = {}
    blocks = _doc_blocks("python")
    assert len(blocks) == 3
    for block in blocks:
        exec(compile(block, "docs/profile_your_snn.md", "exec"), namespace)  # noqa: S102 - our own doc
    assert namespace["report"].coverage["unsupported_calls"] == 0
    assert set(namespace["report"].lif_sites["name"]) == {"stem.2", "stage1.2", "stage2.2"}


GRAY_MODEL = """
import torch
from torch import nn
from spikingjelly.activation_based import neuron


class Gray(nn.Module):
    def __init__(self, T=2):
        super().__init__()
        self.T = T
        self.conv = nn.Conv2d(1, 2, 3)  # one input channel: the RGB data does not fit
        self.lif = neuron.IFNode(step_mode="s")

    def forward(self, x):
        return torch.stack([self.lif(self.conv(x)).flatten(1) for _ in range(int(self.T))]).mean(0)


def build(T=2):
    return Gray(T)
"""


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ("{}", "batch 0: Gray's forward raised RuntimeError on images of shape [2, 3, 16, 16] (T=2): "),
        ('{"T": "x"}', "Gray.T must be a whole number of time steps (got 'x')"),
        ('{"T": 2.5}', "Gray.T must be a whole number of time steps (got 2.5)"),
    ],
)
def test_cli_a_model_that_fails_on_the_data_is_one_line(tmp_path, kwargs, message):
    (tmp_path / "gray.py").write_text(GRAY_MODEL)
    args = ["energy", "--model", f"{tmp_path / 'gray.py'}:build", "--model-kwargs", kwargs]
    args += ["--data", "random", "--image-size", "16", "--num-images", "2", "--batch-size", "2"]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "o")])
    assert result.exit_code == 2, result.output
    assert message in error_line(result)
    assert not (tmp_path / "o").exists()


def test_the_firing_rule_in_provenance_is_the_neurons_own():
    """This project's LIF fires on u > V_th (the reference code); SpikingJelly's nodes on v >= V_th."""
    from gac_analysis.provenance import PROJECT_FIRING_RULE, SPIKINGJELLY_FIRING_RULE, firing_rules

    assert firing_rules(build_from_spec("default")) == PROJECT_FIRING_RULE
    assert firing_rules(build_from_spec(f"{EXAMPLE}:build")) == SPIKINGJELLY_FIRING_RULE
    assert firing_rules(torch.nn.Linear(2, 2)) is None


def test_an_unsupported_op_is_one_warning_line_on_the_command_line(tmp_path, monkeypatch):
    (tmp_path / "hs_model.py").write_text(
        "from torch import nn\n"
        "class Net(nn.Module):\n"
        "    T = 1\n"
        "    def __init__(self):\n"
        "        super().__init__(); self.c = nn.Conv2d(3, 4, 3); self.h = nn.Hardswish()\n"
        "    def forward(self, x):\n"
        "        return self.h(self.c(x)).mean((2, 3))\n"
        "def build():\n"
        "    return Net()\n"
    )
    monkeypatch.chdir(tmp_path)
    args = ["energy", "--model", "hs_model.py:build", "--data", "random", "--num-images", "2", "--out", "run"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if "hardswish" in line]
    assert lines[0].startswith("warning: no counting rule for hardswish"), result.output
    assert "listed under 'unsupported'" in lines[0]
    assert "UnsupportedOpsWarning" not in result.output and "__init__.py" not in result.output
    assert json.loads((tmp_path / "run" / "report.json").read_text())["unsupported"][0]["op"] == "hardswish"


def test_a_model_run_over_time_by_the_tool_is_named_in_its_errors():
    import torch
    from torch import nn

    from gac_analysis.accounting import profile
    from gac_analysis.errors import ModelForwardError
    from gac_analysis.models.specs import DirectEncodingOverTime

    class NoTimeLoop(nn.Module):  # no T of its own: run over T by DirectEncodingOverTime
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(5, 4, 3)  # 5 channels: raises on images

        def forward(self, x):
            return self.conv(x)

    with pytest.raises(ModelForwardError, match=r"^batch 0: NoTimeLoop's forward raised RuntimeError"):
        profile(DirectEncodingOverTime(NoTimeLoop(), 2), torch.rand(1, 3, 8, 8))
