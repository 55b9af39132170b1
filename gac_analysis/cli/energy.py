"""``gac-analyze energy``: count every operation and spike, price it in both conventions."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
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
    describe_data,
    handles_errors,
    input_paths,
    open_data,
    open_model,
    plural,
    uses_embedded_model,
)
from gac_analysis.energy.tables import table_label
from gac_analysis.energy.units import PJ_PER_MJ
from gac_analysis.errors import ConfigError
from gac_analysis.fileio import sigterm_unwinds
from gac_analysis.launch import DEFAULT_TIMEOUT_S as DEFAULT_DIST_TIMEOUT_S
from gac_analysis.report_model import graded_neurons_note, silent_neurons_note


def resolve_device(device: str):
    import torch

    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ConfigError(f"unknown device '{device}': use cpu or cuda")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device '{device}' requested but CUDA is not available here; use --device cpu")
    return torch.device(device)


@dataclass(frozen=True)
class EnergyRun:
    """The options of one ``gac-analyze energy`` run, as given on the command line (one object for the
    single-process and the distributed paths, so that an option is added in one place)."""

    ckpt: Path | None
    model_spec: str | None
    model_kwargs: str | None
    image_size: int | None
    data: str | None
    num_images: int | None
    batch_size: int
    device: str
    energy_table: str
    out: Path
    T: int | None
    seed: int
    reuse_static: bool
    fold_bn: bool
    strict: bool
    integer_pricing: str

    def check_pricing(self) -> None:
        """Fail fast, before any work, on an unknown integer pricing rule or a bad energy table."""
        from gac_analysis.energy.conventions import check_integer_pricing
        from gac_analysis.energy.tables import load_energy_table

        check_integer_pricing(self.integer_pricing)
        load_energy_table(self.energy_table)

    def open(self):
        """(model, its checkpoint path or None, data spec, data source) of this run."""
        model, path = open_model(
            self.ckpt, T=self.T, model=self.model_spec, model_kwargs=self.model_kwargs, seed=self.seed
        )
        spec = default_data_spec(uses_embedded_model(self.ckpt, self.model_spec), self.data)
        source = open_data(spec, model, num_images=self.num_images, seed=self.seed, image_size=self.image_size)
        return model, path, spec, source

    def pricing(self) -> dict:
        """The keyword arguments that price a counter (``report_from_counter`` / ``profile``)."""
        return {
            "energy": self.energy_table,
            "reuse_static": self.reuse_static,
            "fold_bn": self.fold_bn,
            "integer_pricing": self.integer_pricing,
        }


def _progress(label: str, *, disable: bool = False) -> Progress:
    return Progress(
        TextColumn(f"[bold]{label}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("batches"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=disable,
    )


def run_profile(model, source, run: EnergyRun, *, show_progress: bool = True):
    """Profile ``model`` over ``source`` as ``run`` says, with a progress bar."""
    from gac_analysis.accounting import profile

    n = len(source)
    with _progress("profiling", disable=not show_progress) as bar:
        task = bar.add_task("profile", total=math.ceil(n / run.batch_size) if n else 0)
        return profile(
            model,
            source.batches(run.batch_size),
            T=run.T,
            strict=run.strict,
            data=source.describe(),
            progress=lambda i, b: bar.advance(task),
            **run.pricing(),
        )


def print_summary(report, out: Path | None = None) -> None:
    """Totals in both conventions, the largest consumers, mean firing rate."""
    e = report.energy
    data = describe_data(report.provenance.get("data"))
    t = Table(
        title=f"energy per image ({plural(report.num_images, 'image')} of {data}, T={report.T}, table "
        f"{table_label(e['table'])})"
    )
    t.add_column("quantity")
    t.add_column("value", justify="right")
    t.add_column("unit / convention")
    t.add_row(
        "paper convention", f"{e['paper']['per_image_mj']:.6g}", "mJ/image (E_MAC x stem MACs + E_AC x fr x T x dense)"
    )
    t.add_row("complete convention", f"{e['complete']['per_image_mj']:.6g}", "mJ/image (every operation, exact counts)")
    ratio = e["difference"]["ratio_complete_to_paper"]
    t.add_row(
        "complete - paper",
        f"{e['difference']['per_image_mj']:.6g}",
        f"mJ/image (complete / paper = {ratio:.3f})" if ratio else "mJ/image",
    )
    tot = report.totals()
    n = max(report.num_images, 1)
    t.add_row("exact ACs", f"{tot['acs'] / n:,.0f}", "ACs/image (binary inputs)")
    t.add_row("fr x T x dense approximation", f"{tot['approx_acs'] / n:,.0f}", "ACs/image (paper convention)")
    t.add_row("effective MACs", f"{tot['effective_macs'] / n:,.0f}", "MACs/image (real-valued inputs)")
    t.add_row("mean firing rate", f"{report.mean_firing_rate:.4f}", "spikes / neuron / step")
    for row in accuracy_rows(getattr(report, "accuracy", None), report.provenance.get("accuracy_unavailable")):
        t.add_row(*row)
    cov = getattr(report, "coverage", None)
    if cov:
        t.add_row(
            "coverage",
            f"{cov['unsupported_calls']:,} unsupported",
            f"op calls: {cov['counted_calls']:,} counted, {cov['free_calls']:,} free (views, copies)",
        )
    console.print(t)
    top = report.layers.nlargest(5, "complete_pj")
    tt = Table(title="largest consumers (complete convention)")
    for col in ("layer", "op", "role", "input", "mJ/image", "share"):
        tt.add_column(col, justify="right" if col in ("mJ/image", "share") else "left")
    total = e["complete"]["total_pj"] or 1.0
    for _, r in top.iterrows():
        tt.add_row(
            r["name"],
            r["op"],
            r["role"],
            r["input"] if isinstance(r["input"], str) else "-",  # NaN: no input kind observed (BN, pools)
            f"{r['complete_pj'] / n / PJ_PER_MJ:.4g}",
            f"{100 * r['complete_pj'] / total:.1f}%",
        )
    console.print(tt)
    for m in report.checks.get("input_kind_mismatches", []):
        console.print(f"[yellow]note:[/] {m['name']} is declared {m['declared_input']} but received {m['input']} input")
    sites = report.lif_sites
    graded = graded_neurons_note(zip(sites["name"], sites["output"])) if "output" in sites else None
    for note in (silent_neurons_note(zip(sites["name"], sites["spikes"])), graded):
        if note:
            console.print(f"[yellow]note:[/] {note}", highlight=False, soft_wrap=True)
    if out is not None:
        console.print(f"wrote {out}/report.json, layers.csv, lif_sites.csv, per_step.csv", highlight=False)


def accuracy_rows(acc: dict | None, unavailable: str | None = None) -> list[tuple[str, str, str]]:
    """Summary rows for the report's ``accuracy`` entry (see gac_analysis/accounting/accuracy.py)."""
    if acc is None:
        return [("top-1 accuracy", "-", unavailable or "no labels in the data")]
    rows = [("top-1 accuracy", f"{100 * acc['top1']:.2f}%", f"{acc['correct']} of {acc['labelled']} labelled images")]
    for conv in ("paper", "complete"):
        v = acc["energy_per_correct_mj"][conv]
        rows.append(
            (
                f"energy per correct prediction ({conv})",
                "-" if v is None else f"{v:.6g}",
                f"mJ per correct prediction, {conv} convention",
            )
        )
    return rows


@handles_errors
def energy_cmd(
    ckpt: Optional[Path] = typer.Argument(
        None, help="Checkpoint; with --model, a state_dict for it; omitted: the embedded default model."
    ),
    model_spec: Optional[str] = typer.Option(None, "--model", help=MODEL_HELP),
    model_kwargs: Optional[str] = typer.Option(None, "--model-kwargs", help=MODEL_KWARGS_HELP),
    image_size: Optional[int] = typer.Option(
        None, "--image-size", min=1, help="Side of the square input images in pixels (random: default 32)."
    ),
    data: Optional[str] = typer.Option(
        None,
        "--data",
        show_default=DATA_DEFAULT,
        help="random | digits | photos | cifar10:PATH | cifar100:PATH | folder:PATH",
    ),
    num_images: Optional[int] = typer.Option(
        None, "--num-images", min=1, show_default="all (random: 16, digits: 360)", help="Analyse the first N images."
    ),
    batch_size: int = typer.Option(32, "--batch-size", min=1),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda"),
    energy_table: str = typer.Option(
        "45nm-fp32", "--energy-table", help="45nm-fp32 | 45nm-fp16 | 45nm-int8 | 45nm-int32 | PATH.yaml"
    ),
    out: Path = typer.Option(Path("reports/energy"), "--out", help=OUT_HELP),
    T: Optional[int] = typer.Option(
        None,
        "--T",
        min=1,
        help="Time steps: direct-coding checkpoints, and --model builders that take T or models without one.",
    ),
    seed: int = typer.Option(
        0,
        "--seed",
        min=0,
        max=SEED_MAX,
        help="Seed of the random data source (and of a --model's initial weights when no CKPT is given).",
    ),
    reuse_static: bool = typer.Option(
        True, "--reuse-static/--per-step-static", help="Count time-invariant work (stem, SCA) once, or at every step."
    ),
    fold_bn: bool = typer.Option(False, "--fold-bn/--unfold-bn", help="Price BN as folded into the conv."),
    strict: bool = typer.Option(
        False,
        "--strict",
        help="Fail (exit 2, naming them) when the forward runs operations "
        "no counting rule knows, instead of listing them under "
        "'unsupported' in the report.",
    ),
    integer_pricing: str = typer.Option(
        "mac",
        "--integer-pricing",
        help="Price conv/linear inputs that are whole "
        "numbers but not 0/1 (SEW ADD, spike sums): 'mac' (1 MAC per non-zero "
        "input x weight) or 'k_ac' (k ACs for a value k); see docs/counting_rules.md.",
    ),
    distributed: Optional[bool] = typer.Option(
        None,
        "--distributed/--no-distributed",
        show_default="auto: on under torchrun",
        help="Split the images across the processes of a torchrun launch (gloo on CPU, nccl on CUDA); the "
        "report equals the single-process one.",
    ),
    dist_timeout: float = typer.Option(
        DEFAULT_DIST_TIMEOUT_S,
        "--dist-timeout",
        min=1.0,
        help="Seconds a distributed run waits for its slowest process before failing.",
    ),
):
    """Exact per-layer, per-step operation and spike counts; energy in the paper and complete conventions."""
    from gac_analysis.distributed import resolve_launch

    run = EnergyRun(
        ckpt=ckpt,
        model_spec=model_spec,
        model_kwargs=model_kwargs,
        image_size=image_size,
        data=data,
        num_images=num_images,
        batch_size=batch_size,
        device=device,
        energy_table=energy_table,
        out=out,
        T=T,
        seed=seed,
        reuse_static=reuse_static,
        fold_bn=fold_bn,
        strict=strict,
        integer_pricing=integer_pricing,
    )
    launch = resolve_launch(distributed)
    if launch is not None:
        return _energy_distributed(launch, run, timeout_s=dist_timeout)
    run.check_pricing()
    dev = resolve_device(device)
    model, path, spec, source = run.open()
    model = model.to(dev)
    with atomic_output_dir(out, kind="energy", inputs=input_paths(path, spec)) as tmp:
        report = run_profile(model, source, run)
        report.provenance["distributed"] = {"world_size": 1, "backend": None}
        report.write_files(tmp)
    print_summary(report, out)


# ---- distributed run (torchrun): see gac_analysis.distributed and docs/distributed.md ---------------------


def _energy_distributed(launch, run: EnergyRun, *, timeout_s: float) -> None:
    """``energy`` as one rank of a torchrun launch: analyse this rank's shard, sum the counts, rank 0 writes.

    Every rank runs the same steps; after the local work and after writing, the ranks agree on success,
    so a rank that fails makes every rank fail with that rank's message (and rank 0 writes nothing).
    """
    from gac_analysis import distributed as gd

    if run.device.startswith("cuda:"):
        raise ConfigError(
            f"--device {run.device}: in a distributed run each process uses cuda:LOCAL_RANK; pass "
            "--device cuda and choose the GPUs with CUDA_VISIBLE_DEVICES"
        )
    if run.device == "cpu":
        gd.configure_threads(launch.local_world_size)
    try:
        with _sigterm_unwinds(), gd.init(timeout_s=timeout_s, device=run.device, env=launch) as sess:
            report = _energy_ranks(sess, run)
    except gd.RankFailed as e:
        # the failing ranks and rank 0 say why; the other ranks only exit with the code
        if _prints_failure(e, launch):
            raise
        raise typer.Exit(code=e.exit_code) from None
    if report is not None:
        print_summary(report, run.out)


#: SIGTERM (torchrun stopping the workers after another one failed) unwinds the stack like Ctrl-C.
_sigterm_unwinds = sigterm_unwinds


def _prints_failure(error, launch) -> bool:
    """Whether this rank prints a :class:`RankFailed`: rank 0 and the ranks that failed."""
    return launch.rank == 0 or any(r == launch.rank for r, _, _ in error.failures)


def _energy_ranks(sess, run: EnergyRun):
    from gac_analysis import distributed as gd

    def analyse():
        run.check_pricing()
        model, _, spec, source = run.open()
        if sess.is_main:
            check_output_dir(run.out, kind="energy", inputs=input_paths(run.ckpt, spec))
        n = len(source)
        indices = gd.shard_indices(n, sess.rank, sess.world_size, block=run.batch_size)
        num_batches = math.ceil(n / run.batch_size)
        if sess.is_main and num_batches < sess.world_size:
            console.print(
                f"note: {n} images make {num_batches} batch(es) of {run.batch_size} for {sess.world_size} "
                f"processes: {sess.world_size - num_batches} process(es) stay idle; lower --batch-size to "
                "use them all",
                highlight=False,
            )
        model = model.to(sess.device)
        with _progress(f"profiling (rank 0 of {sess.world_size})", disable=not sess.is_main) as bar:
            task = bar.add_task("profile", total=math.ceil(len(indices) / run.batch_size))
            counter = gd.count_images(
                model,
                source.batches(run.batch_size, indices=indices),
                T=run.T,
                strict=run.strict,
                progress=lambda i, b: bar.advance(task),
            )
        return model, source, counter

    model, source, counter = sess.run_local(analyse, "the analysis")
    sess.collective(lambda: gd.reduce_counter(counter, object_group=sess.object_group), "summing the counts")

    def write():
        if not sess.is_main:
            return None
        report = gd.report_from_counter(counter, model, data=source.describe(), **run.pricing())
        report.provenance["distributed"] = sess.describe()
        with atomic_output_dir(run.out, kind="energy") as tmp:
            report.write_files(tmp)
        return report

    return sess.run_local(write, "writing the report")
