"""Run an analysis across processes and GPUs with ``torch.distributed``, identical to one process.

Every count of the accounting engine is an integer sum over images, so an analysis splits exactly:
each process (*rank*) analyses its own shard of the images, the per-site integer counters are summed
across ranks (one ``all_reduce`` of int64), and rank 0 builds the report from the summed counts.
Floating statistics (firing rates, energies) are derived only afterwards, from the summed integers,
never averaged across ranks -- so the report equals the single-process report bit for bit.

Launch with ``torchrun`` (see ``docs/distributed.md``); :func:`launch_env` reads the variables it
sets (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``).

Building blocks:

* :func:`shard_indices` -- which images a rank analyses (every image exactly once, no padding);
* :func:`init` -- start the process group (gloo on CPU, nccl on CUDA with ``cuda:LOCAL_RANK``) and
  return a :class:`Session`, a context manager that always destroys the group;
* :meth:`Session.run_local` -- run a rank's local work and agree on success: if any rank raised,
  every rank raises :class:`RankFailed` naming the failing rank and its one-line message;
* :func:`reduce_counter` -- sum a :class:`~gac_analysis.accounting.engine.OpCounter` over all ranks;
* :func:`count_images` / :func:`report_from_counter` -- the two halves of
  :func:`gac_analysis.accounting.profile`, with the reduction in between.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import traceback
from datetime import timedelta
from typing import Callable, Mapping, TypeVar

import torch

from gac_analysis.accounting import count_images, report_from_counter
from gac_analysis.errors import ConfigError, GacError
from gac_analysis.launch import DEFAULT_TIMEOUT_S, LaunchEnv, launch_env, resolve_launch, shard_indices, usable_cpus

# DEFAULT_TIMEOUT_S, LaunchEnv, launch_env, resolve_launch, shard_indices and usable_cpus live in the
# torch-free gac_analysis.launch (the CLI reads them without importing torch); count_images and
# report_from_counter in gac_analysis.accounting. They are re-exported here.
__all__ = [
    "DEFAULT_TIMEOUT_S",
    "DistributedError",
    "LaunchEnv",
    "RankFailed",
    "Session",
    "configure_threads",
    "count_images",
    "init",
    "launch_env",
    "reduce_counter",
    "report_from_counter",
    "resolve_launch",
    "shard_indices",
    "usable_cpus",
]

#: Exit code of a communication failure (a collective timed out, a process vanished, init failed).
COMM_EXIT_CODE = 3
#: Exit code of an unexpected (non-:class:`GacError`) exception on a rank.
INTERNAL_EXIT_CODE = 1
INT64_MAX = 2**63 - 1

T_ = TypeVar("T_")


class DistributedError(GacError):
    """A distributed run could not be set up or lost contact between its processes (exit code 3)."""

    exit_code = COMM_EXIT_CODE


class RankFailed(GacError):
    """One or more ranks failed their local work; raised on every rank so the whole run fails.

    Attributes:
        failures: ``[(rank, message, exit_code), ...]`` in rank order.
        world_size: the number of ranks.
        exit_code: the first failing rank's exit code (2 for bad input, 1 for an internal error).
    """

    def __init__(self, failures: list[tuple[int, str, int]], world_size: int, phase: str):
        self.failures = failures
        self.world_size = world_size
        self.phase = phase
        rank, message, code = failures[0]
        self.exit_code = code
        others = [r for r, _, _ in failures[1:]]
        also = f" (rank{'s' if len(others) > 1 else ''} {', '.join(map(str, others))} failed too)" if others else ""
        super().__init__(f"rank {rank} of {world_size} failed during {phase}: {_printable(message)}{also}")


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _printable(text: object) -> str:
    """One line, with anything that looks like console markup (``[/path:12]`` in gloo errors) escaped.

    The CLI prints error messages through rich, which would otherwise read such text as a tag.
    """
    from rich.markup import escape

    return escape(_one_line(text))


def configure_threads(local_world_size: int, environ: Mapping[str, str] | None = None) -> int:
    """Give each of the ``local_world_size`` processes of a node its share of the CPUs.

    Sets ``torch.set_num_threads(max(1, cpus // local_world_size))`` unless ``OMP_NUM_THREADS`` is
    set (torchrun sets ``OMP_NUM_THREADS=1`` itself when it starts several processes per node and the
    variable is unset). Returns the thread count in force.
    """
    environ = os.environ if environ is None else environ
    if not environ.get("OMP_NUM_THREADS"):
        torch.set_num_threads(max(1, usable_cpus() // max(1, local_world_size)))
    return torch.get_num_threads()


# ---- process group --------------------------------------------------------------------------------


class Session:
    """A started process group and this process's place in it; a context manager that always destroys it.

    Attributes: ``rank``, ``world_size``, ``local_rank``, ``local_world_size``, ``backend`` (``"gloo"``
    or ``"nccl"``), ``device`` (``cpu`` or ``cuda:LOCAL_RANK``), ``timeout_s``, ``object_group`` (the
    gloo group used to exchange status objects; ``None`` is the default group).
    """

    def __init__(
        self,
        *,
        rank: int,
        world_size: int,
        local_rank: int,
        local_world_size: int,
        backend: str,
        device: torch.device,
        timeout_s: float,
        object_group=None,
    ):
        self.rank = rank
        self.world_size = world_size
        self.local_rank = local_rank
        self.local_world_size = local_world_size
        self.backend = backend
        self.device = device
        self.timeout_s = timeout_s
        self.object_group = object_group
        self._closed = False

    @property
    def is_main(self) -> bool:
        """True on rank 0, the only rank that shows progress and writes outputs."""
        return self.rank == 0

    def describe(self) -> dict:
        """``{"world_size": W, "backend": B}`` for the report's provenance."""
        return {"world_size": self.world_size, "backend": self.backend}

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Destroy the process group (idempotent; never raises)."""
        if self._closed:
            return
        self._closed = True
        import torch.distributed as dist

        try:
            if dist.is_initialized():
                dist.destroy_process_group()
        except Exception:  # pragma: no cover - best effort after a broken collective
            pass

    def _comm_error(self, e: BaseException, what: str) -> DistributedError:
        return DistributedError(
            f"rank {self.rank} of {self.world_size}: {what} failed ({type(e).__name__}: {_printable(e)}); another "
            f"process may have died, or the {self.timeout_s:g} s timeout passed (raise it with --dist-timeout)"
        )

    def agree(self, error: BaseException | None, phase: str) -> None:
        """Exchange every rank's status; if any rank failed, raise :class:`RankFailed` on every rank."""
        import torch.distributed as dist

        if error is None:
            status = None
        elif isinstance(error, GacError):
            status = (_one_line(error), int(getattr(error, "exit_code", 2)))
        else:
            status = (
                f"internal error {type(error).__name__}: {_one_line(error)} (traceback on that rank's stderr)",
                INTERNAL_EXIT_CODE,
            )
        gathered: list = [None] * self.world_size
        try:
            dist.all_gather_object(gathered, (self.rank, status), group=self.object_group)
        except Exception as e:
            raise self._comm_error(e, f"exchanging the status after {phase}") from None
        failures = [(r, s[0], s[1]) for r, s in sorted(gathered, key=lambda g: g[0]) if s is not None]
        if failures:
            raise RankFailed(failures, self.world_size, phase)

    def run_local(self, fn: Callable[[], T_], phase: str) -> T_:
        """Run ``fn()`` on this rank, then :meth:`agree`; returns ``fn``'s result when every rank succeeded.

        A :class:`GacError` travels as its one-line message; any other exception also prints its
        traceback on this rank's stderr. ``KeyboardInterrupt`` is not caught.
        """
        error = result = None
        try:
            result = fn()
        except Exception as e:  # noqa: BLE001 - reported to every rank below
            error = e
            if not isinstance(e, GacError):
                traceback.print_exc(file=sys.stderr)
        self.agree(error, phase)
        return result

    def collective(self, fn: Callable[[], T_], what: str) -> T_:
        """Run a collective operation, turning a communication failure into :class:`DistributedError`."""
        try:
            return fn()
        except GacError:
            raise
        except Exception as e:
            raise self._comm_error(e, what) from None


def init(
    backend: str | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    *,
    device: str = "cpu",
    env: LaunchEnv | None = None,
    init_method: str | None = None,
) -> Session:
    """Start the process group and return a :class:`Session` (use it as a context manager).

    Args:
        backend: ``"gloo"`` or ``"nccl"``; ``None`` picks nccl for a CUDA ``device``, else gloo.
        timeout_s: how long a collective waits for the other ranks before the run fails.
        device: ``"cpu"`` or ``"cuda"``; with CUDA each rank uses ``cuda:LOCAL_RANK``.
        env: the launch environment; ``None`` reads it from the environment (torchrun).
        init_method: ``None`` uses ``env://`` (``MASTER_ADDR``/``MASTER_PORT``); ``tcp://HOST:PORT`` or
            ``file://PATH`` work too (tests use them with a world of one).

    Raises:
        ConfigError: bad arguments (no launch environment, unknown backend, missing GPU).
        DistributedError: the process group could not be started (rendezvous failed or timed out).
    """
    import torch.distributed as dist

    if env is None:
        env = launch_env()
        if env is None:
            raise ConfigError("no distributed launch environment (WORLD_SIZE, RANK): launch with torchrun")
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or not timeout_s > 0:
        raise ConfigError(f"--dist-timeout must be a positive number of seconds, got {timeout_s!r}")
    if not dist.is_available():
        raise ConfigError("this torch build has no torch.distributed: install a build with distributed support")
    if device not in ("cpu", "cuda"):
        raise ConfigError(
            f"distributed device '{device}': use cpu, or cuda (each process then uses "
            "cuda:LOCAL_RANK; choose GPUs with CUDA_VISIBLE_DEVICES)"
        )
    backend = backend or ("nccl" if device == "cuda" else "gloo")
    if backend not in ("gloo", "nccl"):
        raise ConfigError(f"unknown distributed backend '{backend}': use gloo or nccl")
    if backend == "nccl" and device != "cuda":
        raise ConfigError("the nccl backend needs --device cuda")
    if device == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("device 'cuda' requested but CUDA is not available here; use --device cpu")
        if env.local_rank >= torch.cuda.device_count():
            raise ConfigError(
                f"local rank {env.local_rank} needs cuda:{env.local_rank}, but only "
                f"{torch.cuda.device_count()} GPU(s) are visible: start at most that many processes "
                "per node (--nproc_per_node)"
            )
        torch.cuda.set_device(env.local_rank)
        dev = torch.device("cuda", env.local_rank)
    else:
        dev = torch.device("cpu")
    if dist.is_initialized():
        raise ConfigError("a torch.distributed process group is already initialised in this process")
    timeout = timedelta(seconds=float(timeout_s))
    kwargs = {
        "backend": backend,
        "timeout": timeout,
        "rank": env.rank,
        "world_size": env.world_size,
        "init_method": init_method or "env://",
    }
    if backend == "nccl":
        kwargs["device_id"] = dev
    try:
        dist.init_process_group(**kwargs)
        object_group = None if backend == "gloo" else dist.new_group(backend="gloo", timeout=timeout)
    except Exception as e:
        if dist.is_initialized():
            dist.destroy_process_group()
        raise DistributedError(
            f"rank {env.rank} of {env.world_size}: cannot start the {backend} process group "
            f"({type(e).__name__}: {_printable(e)}); check MASTER_ADDR/MASTER_PORT and that every "
            f"process started within the {float(timeout_s):g} s timeout"
        ) from None
    return Session(
        rank=env.rank,
        world_size=env.world_size,
        local_rank=env.local_rank,
        local_world_size=env.local_world_size,
        backend=backend,
        device=dev,
        timeout_s=float(timeout_s),
        object_group=object_group,
    )


# ---- counting and reduction -------------------------------------------------------------------


def _site_layout(counter) -> list[tuple[str, object, list[str], list[str]]]:
    """Each site's static description (counters emptied) and its counter names, in execution order."""
    out = []
    for name, site in counter.sites.items():
        skeleton = dataclasses.replace(site, calls=0, ints={}, tensors={})
        out.append((name, skeleton, list(site.ints), list(site.tensors)))
    return out


def merge_layouts(layouts: list[list[tuple[str, object, list[str], list[str]]]]):
    """Union of the ranks' site layouts: sites in first-seen order (rank 0 first), counter names united.

    Every rank runs the same model, so ranks that analysed images agree; ranks with an empty shard
    contribute nothing and take the sites from the others.
    """
    merged: dict[str, list] = {}
    for layout in layouts:
        for name, skeleton, int_keys, tensor_keys in layout:
            entry = merged.setdefault(name, [skeleton, [], []])
            entry[1].extend(k for k in int_keys if k not in entry[1])
            entry[2].extend(k for k in tensor_keys if k not in entry[2])
    return [(name, sk, ik, tk) for name, (sk, ik, tk) in merged.items()]


def _counter_device(counter) -> torch.device:
    for site in counter.sites.values():
        for t in site.tensors.values():
            return t.device
    from gac_analysis.accounting.report import device_of

    return device_of(counter.model)


def reduce_counter(counter, group=None, *, object_group=None):
    """Sum ``counter`` over all ranks of ``group`` in place (int64 ``all_reduce``); returns it.

    Every site counter (python-int lists become int64 tensors for the reduction; device tensors are
    reduced on the communication device), every ``site.calls``, ``num_images`` and ``batches`` are
    summed. Sites are first united across ranks (an ``all_gather_object`` of their static
    descriptions), so a rank with no images -- hence no sites -- works, and all ranks end with the same
    sites in the same order. Afterwards every rank holds the global totals; rates and energies must be
    derived from them (:func:`report_from_counter`), never averaged across ranks.

    Without an initialised process group this is a no-op (a single process is its own sum).

    Raises:
        DistributedError: the ranks disagree on ``T``, or a count exceeds int64.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return counter
    layout = _agreed_layout(counter, group, group if object_group is None else object_group)
    sites = _aligned_sites(counter, layout)
    counter.sites = sites
    backend = str(dist.get_backend(group))
    comm = torch.device("cuda", torch.cuda.current_device()) if "nccl" in backend else torch.device("cpu")
    flat = _flatten(counter, layout, comm)
    dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=group)
    _unflatten(counter, layout, flat)
    return counter


def _agreed_layout(counter, group, object_group):
    """The union of every rank's site layout (an ``all_gather_object``); :class:`DistributedError` when the
    ranks count different T."""
    import torch.distributed as dist

    gathered: list = [None] * dist.get_world_size(group)
    dist.all_gather_object(gathered, (int(counter.T), _site_layout(counter)), group=object_group)
    Ts = sorted({T for T, _ in gathered})
    if len(Ts) != 1:
        raise DistributedError(
            f"the ranks count different numbers of time steps {Ts}: every rank must load the "
            "same model with the same --T"
        )
    coverage: list = [None] * dist.get_world_size(group)
    dist.all_gather_object(coverage, counter.coverage_state(), group=object_group)
    counter.merge_coverage(coverage)
    return merge_layouts([lay for _, lay in gathered])


def _aligned_sites(counter, layout) -> dict:
    """This rank's sites in the agreed order, with zero counters where it saw none."""
    T = counter.T
    device = _counter_device(counter)
    sites = {}
    for name, skeleton, int_keys, tensor_keys in layout:
        site = counter.sites.get(name)
        if site is None:
            site = dataclasses.replace(skeleton, calls=0, ints={}, tensors={})
        for k in int_keys:
            site.ints.setdefault(k, [0] * (T + 1))
        for k in tensor_keys:
            if k not in site.tensors:
                site.tensors[k] = torch.zeros(T + 1, dtype=torch.int64, device=device)
        sites[name] = site
    return sites


def _flatten(counter, layout, comm: torch.device) -> torch.Tensor:
    """Every counter of every site, the calls, ``num_images`` and ``batches`` as one int64 vector on ``comm``."""
    sites = counter.sites
    parts: list[torch.Tensor] = []
    for name, _, int_keys, tensor_keys in layout:
        site = sites[name]
        for k in int_keys:
            values = site.ints[k]
            if any(abs(v) > INT64_MAX for v in values):
                raise DistributedError(
                    f"site {name}: counter {k} exceeds int64 and cannot be reduced; analyse fewer images per run"
                )
            parts.append(torch.tensor(values, dtype=torch.int64))
        for k in tensor_keys:
            parts.append(site.tensors[k].to(comm, torch.int64))
    accuracy = getattr(counter, "accuracy", None)  # labelled / correct images: summed like the counts
    acc_state = accuracy.state() if accuracy is not None else [0, 0, 0, 0]
    parts.append(
        torch.tensor(
            [sites[name].calls for name, *_ in layout] + acc_state + [counter.num_images, counter.batches],
            dtype=torch.int64,
        )
    )
    return torch.cat([p.to(comm) for p in parts])


def _unflatten(counter, layout, flat: torch.Tensor) -> None:
    """Write the reduced vector back into the counter (device tensors stay on their device)."""
    T, sites = counter.T, counter.sites
    host = flat.cpu()
    offset = 0
    for name, _, int_keys, tensor_keys in layout:
        site = sites[name]
        for k in int_keys:
            site.ints[k] = host[offset : offset + T + 1].tolist()
            offset += T + 1
        for k in tensor_keys:
            old = site.tensors[k]
            site.tensors[k] = flat[offset : offset + T + 1].to(old.device, old.dtype).clone()
            offset += T + 1
    tail = host[offset:].tolist()
    for (name, *_), calls in zip(layout, tail):
        sites[name].calls = int(calls)
    counter.num_images, counter.batches = int(tail[-2]), int(tail[-1])
    if getattr(counter, "accuracy", None) is not None:
        counter.accuracy.load_state(tail[-6:-2])
