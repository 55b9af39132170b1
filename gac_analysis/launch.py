"""Where a process sits in a ``torchrun`` launch, and which images it analyses (torch-free).

The command line reads these before it imports torch: the launch environment (:func:`launch_env`,
:func:`resolve_launch`), the default collective timeout, and the split of the images across ranks
(:func:`shard_indices`). :mod:`gac_analysis.distributed` builds the process group on top of them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping

from gac_analysis.errors import ConfigError

__all__ = ["DEFAULT_TIMEOUT_S", "LaunchEnv", "launch_env", "resolve_launch", "shard_indices", "usable_cpus"]

#: Default time a collective waits for the slowest rank before the run fails (seconds).
DEFAULT_TIMEOUT_S = 1800.0


# ---- launch environment ------------------------------------------------------------------------


@dataclass(frozen=True)
class LaunchEnv:
    """Where this process sits in a distributed run (from torchrun's environment variables)."""

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    master_addr: str | None
    master_port: str | None


def _env_int(environ: Mapping[str, str], key: str, default: int | None = None) -> int:
    raw = environ.get(key)
    if raw is None or raw.strip() == "":
        if default is None:
            raise ConfigError(f"environment variable {key} is not set: launch with torchrun, or set {key}")
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"environment variable {key}={raw!r} is not an integer: check the launcher") from None


def launch_env(environ: Mapping[str, str] | None = None) -> LaunchEnv | None:
    """The launch environment if this process was started by ``torchrun`` (``WORLD_SIZE`` and ``RANK`` set).

    ``LOCAL_RANK`` defaults to ``RANK``, ``LOCAL_WORLD_SIZE`` to ``WORLD_SIZE``. Returns ``None`` when
    ``WORLD_SIZE`` or ``RANK`` is missing. Raises :class:`ConfigError` on malformed values.
    """
    environ = os.environ if environ is None else environ
    if "WORLD_SIZE" not in environ or "RANK" not in environ:
        return None
    world = _env_int(environ, "WORLD_SIZE")
    rank = _env_int(environ, "RANK")
    if world < 1 or not 0 <= rank < world:
        raise ConfigError(
            f"inconsistent launch environment RANK={rank}, WORLD_SIZE={world}: need 0 <= RANK < "
            "WORLD_SIZE; check the launcher"
        )
    local_rank = _env_int(environ, "LOCAL_RANK", rank)
    local_world = _env_int(environ, "LOCAL_WORLD_SIZE", world)
    if local_world < 1 or not 0 <= local_rank < local_world:
        raise ConfigError(
            f"inconsistent launch environment LOCAL_RANK={local_rank}, LOCAL_WORLD_SIZE={local_world}"
            ": check the launcher"
        )
    return LaunchEnv(
        rank=rank,
        world_size=world,
        local_rank=local_rank,
        local_world_size=local_world,
        master_addr=environ.get("MASTER_ADDR"),
        master_port=environ.get("MASTER_PORT"),
    )


def resolve_launch(flag: bool | None, environ: Mapping[str, str] | None = None) -> LaunchEnv | None:
    """Decide whether to run distributed: ``flag`` ``None`` auto-detects torchrun, ``True`` requires it.

    ``False`` (``--no-distributed``) is refused inside a launch of several processes: every process
    would analyse every image and write the same output folder.
    """
    env = launch_env(environ)
    if flag is None:
        return env
    if flag:
        if env is None:
            raise ConfigError(
                "--distributed needs a launcher: run under torchrun (it sets WORLD_SIZE, RANK, "
                "LOCAL_RANK, MASTER_ADDR, MASTER_PORT), e.g. torchrun --nproc_per_node=2 "
                "--no-python gac-analyze energy ..."
            )
        environ = os.environ if environ is None else environ
        missing = [k for k in ("MASTER_ADDR", "MASTER_PORT") if not environ.get(k)]
        if missing:
            raise ConfigError(
                f"--distributed: environment variable {', '.join(missing)} is not set: launch with "
                "torchrun, or set MASTER_ADDR and MASTER_PORT"
            )
        return env
    if env is not None and env.world_size > 1:
        raise ConfigError(
            f"--no-distributed, but this process is rank {env.rank} of {env.world_size} of a "
            "torchrun launch: every process would analyse all images and write the same output; "
            "drop --no-distributed, or run without torchrun"
        )
    return None


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one, else ``os.cpu_count()``)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


# ---- sharding -----------------------------------------------------------------------------------


def shard_indices(n: int, rank: int, world: int, *, block: int = 1) -> list[int]:
    """The image positions that ``rank`` of ``world`` analyses, out of ``n``.

    Strided in blocks: the blocks ``[0, block)``, ``[block, 2 block)``, ... are dealt round-robin, so
    rank ``r`` gets blocks ``r, r + world, r + 2 world, ...`` in increasing order. With ``block=1``
    this is ``range(rank, n, world)``. The shards of all ranks are disjoint and their union is
    ``range(n)``: every image is analysed exactly once and nothing is padded or duplicated when
    ``world`` does not divide ``n``. Shard sizes differ by at most ``block`` images (at most one with
    ``block=1``); some ranks are empty when there are fewer blocks than ranks.

    Integer counts are sums over images, so the order and grouping of images does not change them.
    The energy command shards with ``block=batch_size``, so each rank runs exactly the forward calls
    (batches) of the single-process run and even per-call quantities (the ``calls`` column, the per-call
    binary/real input classification) are identical.
    """
    for value, what in ((n, "n"), (rank, "rank"), (world, "world"), (block, "block")):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"shard_indices: {what} must be an integer, got {value!r}")
    if n < 0 or world < 1 or block < 1 or not 0 <= rank < world:
        raise ValueError(
            f"shard_indices: need n >= 0, world >= 1, block >= 1 and 0 <= rank < world; got n={n}, "
            f"rank={rank}, world={world}, block={block}"
        )
    out: list[int] = []
    for start in range(rank * block, n, world * block):
        out.extend(range(start, min(start + block, n)))
    return out
