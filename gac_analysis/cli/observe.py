"""``gac-analyze observe``: encoding dynamics of GAC vs direct coding, and Proposition 1 (T_g >= T_d).

Writes into ``--out`` (atomically: a failed run leaves no folder): ``observer.json``, ``neurons.csv``
(one row per encoder output neuron), ``sweep.csv`` when ``--T`` asks for a sweep, and PNG figures.
Exit codes: 0 Proposition 1 holds on every neuron, 1 it is violated (outputs are still written),
2 bad input (one ``error:`` line).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from gac_analysis.cli.common import (
    DATA_DEFAULT,
    MODEL_HELP,
    MODEL_KWARGS_HELP,
    OUT_HELP,
    SEED_MAX,
    atomic_output_dir,
    check_output_dir,
    console,
    default_data_spec,
    err_console,
    handles_errors,
    input_paths,
    open_data,
    open_model,
    plural,
    uses_embedded_model,
)
from gac_analysis.errors import ConfigError, TimeStepsUnknownError

#: Encoding figures drawn (the first images of the data given; the bundled photographs for random data).
ENCODING_IMAGES = 2


def parse_T_list(raw: str) -> list[int]:
    """``"2,4,6,8"`` -> ``[2, 4, 6, 8]`` (sorted, duplicates removed); every T must be an integer >= 2."""
    parts = [p.strip() for p in str(raw).split(",")]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = None
    if not values or any(v < 2 for v in values):
        raise ConfigError(
            f"--T must be a comma-separated list of integers >= 2 (GAC needs T >= 2), e.g. --T 2,4,6,8; got {raw!r}"
        )
    return sorted(set(values))


def _open(
    ckpt: Path | None,
    model_spec: str | None = None,
    model_kwargs: str | None = None,
    seed: int = 0,
    seeded_gac: bool = False,
):
    """The model to observe; it needs a GAC encoder of its own unless ``seeded_gac`` supplies one."""
    from gac_analysis.models import GACEncoder, MSResNet

    try:
        model, path = open_model(ckpt, model=model_spec, model_kwargs=model_kwargs, seed=seed)
    except TimeStepsUnknownError:
        raise ConfigError(
            f"{ckpt} is a direct-coding checkpoint without T: the observer needs the time steps; use a "
            "checkpoint that carries them (this project's format) with --seeded-gac, or a GAC checkpoint"
        ) from None
    has_gac = isinstance(getattr(model, "encoder", None), GACEncoder)
    if model_spec is not None and not has_gac and not isinstance(model, MSResNet):
        raise ConfigError(
            f"--model {model_spec} is a {type(model).__name__}, not a GAC-MS-ResNet of this project: the observer "
            "compares GAC with direct coding on one Conv-BN stem of that architecture (--model default, "
            "default-direct with --seeded-gac, or a checkpoint of the paper's code); profile any other model "
            "with `gac-analyze energy`"
        )
    if not seeded_gac and model_spec is not None and not has_gac:
        raise ConfigError(
            f"--model {model_spec} has no GAC encoder (model.encoder, a GACEncoder): the observer "
            "compares GAC with direct coding on the same Conv-BN; use a GAC checkpoint or "
            "--model default, or --seeded-gac to compare with a seeded GAC encoder on its stem"
        )
    if seeded_gac and has_gac:
        console.print(
            "note: the model has its own GAC encoder, which is observed; --seeded-gac is not used",
            highlight=False,
            soft_wrap=True,
        )
    return model, path


@handles_errors
def observe_cmd(
    ckpt: Optional[Path] = typer.Argument(
        None,
        help="GAC checkpoint (reference CIFAR/ImageNet layout or this project's); default: the embedded default model.",
    ),
    model_spec: Optional[str] = typer.Option(None, "--model", help=MODEL_HELP),
    model_kwargs: Optional[str] = typer.Option(None, "--model-kwargs", help=MODEL_KWARGS_HELP),
    data: Optional[str] = typer.Option(
        None,
        "--data",
        show_default=DATA_DEFAULT,
        help="Data source: random, digits, photos, cifar10:PATH, cifar100:PATH, folder:PATH.",
    ),
    num_images: int = typer.Option(8, "--num-images", min=1, help="Images to observe (the first N of the source)."),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Images per forward pass."),
    T: Optional[str] = typer.Option(None, "--T", help="comma list for a sweep, e.g. 2,4,6,8"),
    atol: float = typer.Option(1e-6, "--atol", min=0.0, help="Tolerance for comparing real GAC output values."),
    seed: int = typer.Option(0, "--seed", min=0, max=SEED_MAX, help="Seed of the random data source."),
    out: Path = typer.Option(Path("reports/observe"), "--out", help=OUT_HELP),
    figures: bool = typer.Option(True, "--figures/--no-figures", help="Write the PNG figures."),
    precision: str = typer.Option(
        "float64",
        "--precision",
        help="float32: the encoder as the model runs it; float64: the same weights in "
        "float64 (no sigmoid underflow: the exact-arithmetic statement).",
    ),
    seeded_gac: bool = typer.Option(
        False,
        "--seeded-gac",
        help="For a direct-coding model (no GAC weights): "
        "compare its own stem's direct spikes with a GAC encoder of seeded weights "
        "(seed 0) on that stem; the report flags it.",
    ),
):
    """Measure encoding dynamics (GAC vs direct) and test Proposition 1 (T_g >= T_d)."""
    from gac_analysis.observer import observe, sweep_T
    from gac_analysis.observer.run import PRECISIONS

    Ts = parse_T_list(T) if T is not None else None
    if not math.isfinite(atol):  # the range (min=0) is declared on the option; NaN passes any range
        raise ConfigError(f"--atol must be a finite number >= 0, got {atol}")
    if precision not in PRECISIONS:
        raise ConfigError(f"--precision must be float32 or float64, got {precision!r}")

    model, ckpt_path = _open(ckpt, model_spec, model_kwargs, seed, seeded_gac)
    if Ts and ckpt_path is None:
        raise ConfigError(
            f"--T {T}: the sweep re-reads the model's checkpoint, and --model {model_spec} was built "
            "without one; pass its state_dict as CKPT or drop --T"
        )
    spec = default_data_spec(uses_embedded_model(ckpt, model_spec), data)
    check_output_dir(out, kind="observe", inputs=input_paths(ckpt_path, spec))  # before the work
    source = open_data(spec, model, num_images=num_images, seed=seed)
    report = observe(
        model, source, atol=atol, batch_size=batch_size, precision=precision, seed=seed, seeded_gac=seeded_gac
    )
    if Ts:
        report.sweep = sweep_T(ckpt_path, Ts, source, atol=atol, batch_size=batch_size, precision=precision, seed=seed)

    written = []
    with atomic_output_dir(out, kind="observe", inputs=input_paths(ckpt_path, spec)) as tmp:
        (tmp / "observer.json").write_text(report.to_json() + "\n")
        report.neurons.to_csv(tmp / "neurons.csv", index=False)
        written += ["observer.json", "neurons.csv"]
        if report.sweep is not None:
            report.sweep.to_csv(tmp / "sweep.csv", index=False)
            written.append("sweep.csv")
        if figures:
            written += _figures(model, report, source, tmp)

    _print(report, out, written)
    if not report.holds:
        raise typer.Exit(code=1)


def _encoding_images(source, size: int):
    """``(images [k, 3, H, W], raw uint8 [k, 3, H, W], names, file stem, why)`` of the encoding figures: the
    first images of the data given; for ``random`` data (noise, no structure to show) the bundled photographs."""
    import torch

    from gac_analysis.data import open_source, raw_photos

    if source.name != "random":
        images = next(source.batches(min(ENCODING_IMAGES, len(source))))[0]
        mean = torch.tensor(source.mean).view(1, 3, 1, 1)
        std = torch.tensor(source.std).view(1, 3, 1, 1)
        raw = ((images * std + mean).clamp(0, 1) * 255).round().to(torch.uint8)  # undo the normalisation
        names = [f"{source.name} image {i}" for i in range(images.shape[0])]
        return images, raw, names, "encoding_image", f"the first {images.shape[0]} images of --data {source.name}"
    photos = open_source("photos", image_size=size)
    images = next(photos.batches(len(photos)))[0][:ENCODING_IMAGES]
    files = photos.describe().get("files", [])
    names = [files[i] if i < len(files) else f"photo {i}" for i in range(images.shape[0])]
    return (
        images,
        raw_photos(size)[:ENCODING_IMAGES],
        names,
        "encoding_photo",
        "the bundled photographs, since random images are noise with nothing to encode",
    )


def _figures(model, report, source, folder: Path) -> list[str]:
    from gac_analysis.viz.observer_figures import plot_duration_histograms, plot_encoding, plot_fraction_vs_T

    plot_duration_histograms(report, folder / "durations.png")
    plot_fraction_vs_T(report.sweep if report.sweep is not None else report, folder / "fraction_vs_T.png")
    size = int(model.spec.input_size)
    images, raw, names, stem, why = _encoding_images(source, size)
    out = ["durations.png", "fraction_vs_T.png"]
    if report.seeded_gac:  # the per-image encoding figure draws the model's own GAC encoder, which it lacks
        console.print("encoding figures: none (the model has no GAC encoder of its own)", highlight=False)
        return out
    for i in range(images.shape[0]):
        name = f"{stem}{i}.png"
        h, w = images.shape[-2:]
        plot_encoding(model, images[i], raw[i], folder / name, image_name=f"{names[i]} ({h}x{w})")
        out.append(name)
    console.print(f"encoding figures: {why}", highlight=False, soft_wrap=True)
    return out


def _print(report, out: Path, written: list[str]) -> None:
    t = Table(
        title=f"observer: {report.provenance.get('arch')} T={report.T}, {plural(report.num_images, 'image')}, "
        f"{report.num_neurons:,} neurons ({report.precision})",
        show_header=False,
    )
    cf = report.closed_form
    rows = [
        ("mean T_d / mean T_g (time steps)", f"{report.mean_T_d:.3f} / {report.mean_T_g:.3f}"),
        ("T_g > T_d / == / <", f"{report.fraction_gt:.2%} / {report.fraction_eq:.2%} / {report.fraction_lt:.4%}"),
        (
            "closed form == measured T_d",
            f"{cf['agree']:,} of {cf['checked']:,} (near threshold apart: {cf['near_threshold']:,})",
        ),
        ("violations (T_g < T_d)", f"{report.num_violations:,}"),
    ]
    if report.sweep is not None:
        for _, r in report.sweep.iterrows():
            rows.append(
                (
                    f"sweep T={r['T']} (TA {r['ta_source']})",
                    f"T_g>T_d {r['fraction_gt']:.2%}, violations {r['violations']}",
                )
            )
    for k, v in rows:
        t.add_row(k, v)
    console.print(t)
    style = "bold green" if report.holds else "bold red"
    console.print(f"[{style}]{report.verdict}[/]", highlight=False, soft_wrap=True)
    if not report.holds or report.closed_form["disagree"] or report.float32_gate_underflow_at_spike:
        err_console.print(f"diagnosis: {report.diagnosis}", highlight=False, soft_wrap=True, markup=False)
    console.print(f"wrote {out}: {', '.join(written)}", highlight=False, soft_wrap=True)
