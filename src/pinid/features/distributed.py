"""Image features on a Dask cluster, from one laptop to many machines.

The client reads and hashes every image and leaves out what the cache already holds; the rest
is split into shards (all pins with the same bytes in one shard). A worker runs each shard
through the same :class:`ImageFeatureExtractor` as an in-process run, writing into the
content-addressed cache whose root the client sends with the task, so every machine must reach
that folder at the same path. Cache entries are renamed into place and keyed by content: a shard
rerun after its worker died recomputes only what is missing. A shard's task key is a digest of
its work, so Dask never runs the same shard twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import dask
from distributed import Client, KilledWorker, LocalCluster, as_completed, get_worker
from distributed.client import FutureCancelledError
from distributed.comm.addressing import get_address_host, parse_address, parse_host_port
from tqdm import tqdm

from pinid.errors import PinidError
from pinid.features import DEFAULT_SHARD_SIZE
from pinid.features.extract import ImageFeatureExtractor

CONNECT_TIMEOUT_S = 10
_MALLOC_TRIM = "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"
"""Dask's nannies set glibc's trim threshold to 64 KiB, which halves CNN throughput; a local
cluster starts without it. Its workers' CNN threads also wait passively: spinning threads of
two workers on 2 cores starve each other."""
LOOKUP_THREADS = 8
"""Reading and hashing every image on the client waits on the (shared) file system."""


@dataclass
class ShardedRun:
    """What a cluster run did, counted as :meth:`ImageFeatureExtractor.extract` counts."""

    shards: int = 0
    computed: int = 0
    from_cache: int = 0
    duplicates: int = 0
    unreadable: dict[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Recipe:
    """What a worker needs to rebuild the client's extractor."""

    name: str
    fit: str
    batch_size: int
    cache_root: str
    extractor_id: str
    style: bool
    engine: str


@dataclass(frozen=True)
class _ShardDone:
    computed: int
    from_cache: int
    duplicates: int
    unreadable: dict[int, str]  # position in the shard -> reason


@contextlib.contextmanager
def connect(scheduler: str | None, local_workers: int | None) -> Iterator[Client]:
    """A client of the scheduler at ``scheduler``, or of a cluster of ``local_workers``
    processes on this machine (on 127.0.0.1 only, random ports) that is closed afterwards."""
    if (scheduler is None) == (local_workers is None):
        raise ValueError("give a scheduler address or a number of local workers")
    if local_workers is not None:
        with dask.config.set({_MALLOC_TRIM: None}):
            cluster = LocalCluster(
                n_workers=local_workers,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address="127.0.0.1:0",  # no fixed port to collide with
                env={"OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")},
            )
        with cluster, Client(cluster, set_as_default=False) as client:
            yield client
        return
    try:
        parse_host_port(parse_address(scheduler)[1])  # a client of a bad address hangs on close
        client = Client(scheduler, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise PinidError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
    with client:
        try:
            client.wait_for_workers(1, timeout=CONNECT_TIMEOUT_S)
        except TimeoutError:
            raise PinidError(f"the Dask scheduler at {scheduler} has no workers") from None
        yield client


def extract_on_cluster(
    client: Client,
    extractor: ImageFeatureExtractor,
    paths: Sequence[Path],
    *,
    shard_size: int = DEFAULT_SHARD_SIZE,
    threads: int | None = None,
    what: str = "images",
) -> ShardedRun:
    """Compute the features of ``paths`` that ``extractor``'s cache lacks on the cluster.

    The features land in the cache; read them with ``extractor.extract(paths)``. ``threads``
    sets every worker's CNN threads (default: see :func:`_threads_by_host`).
    """
    run, groups = _survey(extractor, paths)
    # Whole batches per shard: every batch a worker runs is one an in-process run would run.
    size = -(-max(1, shard_size) // extractor.batch_size) * extractor.batch_size
    hashes = list(groups)
    shards = [hashes[i : i + size] for i in range(0, len(hashes), size)]
    run.shards = len(shards)
    if not shards:
        return run
    recipe = _Recipe(
        extractor.spec.name,
        extractor.fit,
        extractor.batch_size,
        str(extractor.cache.root.resolve()),
        extractor.extractor_id,
        extractor.style,
        extractor.engine,
    )
    plan = {"*": threads} if threads else _threads_by_host(client)  # "*": every machine
    futures = {}
    for shard in shards:
        rows = sorted(row for sha in shard for row in groups[sha])
        shard_paths = [os.path.abspath(paths[row]) for row in rows]
        key = _key(recipe, shard_paths, shard, plan)
        futures[client.submit(_run_shard, recipe, shard_paths, plan, key=key)] = rows
    bar = tqdm(
        total=sum(map(len, futures.values())),
        desc=f"features ({what}) on the cluster",
        unit="img",
        disable=None if extractor.progress else True,
    )
    try:
        for future in as_completed(futures, loop=client.loop):
            done: _ShardDone = future.result()
            rows = futures[future]
            run.computed += done.computed
            run.from_cache += done.from_cache  # a rerun shard finds its dead worker's entries
            run.duplicates += done.duplicates
            run.unreadable.update({rows[i]: reason for i, reason in done.unreadable.items()})
            bar.update(len(rows))
    except (KilledWorker, FutureCancelledError) as exc:  # workers kept dying; scheduler gone
        raise PinidError(f"the cluster gave up: {str(exc).splitlines()[0]}") from None
    finally:
        bar.close()
        client.cancel(list(futures))  # no-op for finished shards; stops the rest on an error
    run.unreadable = dict(sorted(run.unreadable.items()))
    _check_visible(extractor, groups, run.unreadable)
    return run


def _survey(
    extractor: ImageFeatureExtractor, paths: Sequence[Path]
) -> tuple[ShardedRun, dict[str, list[int]]]:
    """What the cache already holds, what cannot be read, and the rows of each missing image
    (by sha256, in order of first appearance)."""
    run, groups = ShardedRun(), {}
    with ThreadPoolExecutor(LOOKUP_THREADS, thread_name_prefix="pinid-lookup") as pool:
        for row, item in enumerate(pool.map(extractor.lookup, map(Path, paths))):
            if item.reason is not None:
                run.unreadable[row] = item.reason
            elif item.vector is not None:
                run.from_cache += 1
            else:
                groups.setdefault(item.sha256, []).append(row)
    return run, groups


def _threads_by_host(client: Client) -> dict[str, int]:
    """Each machine's cores shared among the Dask threads its workers run, but at least two
    where it has two. The floor is for the torch engine: single-threaded, its oneDNN kernels
    give features that differ from an in-process run's by up to 1e-5 (measured; any two or more
    threads give the same bits). ONNX Runtime, the default engine, gives the same bits for 1-3
    threads (:mod:`~pinid.features.engines`)."""
    return threads_by_host(client, at_least=2)


def threads_by_host(client: Client, at_least: int = 1) -> dict[str, int]:
    """Each machine's cores shared among the Dask threads its workers run (one worker per
    machine uses the whole machine), but at least ``at_least`` where it has that many cores."""
    cores = client.run(os.cpu_count)
    dask_threads = Counter()
    host_cores = {}
    for address, info in client.scheduler_info()["workers"].items():
        dask_threads[info["host"]] += info["nthreads"]
        host_cores[info["host"]] = cores.get(address) or 1
    return {
        host: max(min(at_least, host_cores[host]), host_cores[host] // n)
        for host, n in dask_threads.items()
    }


def _key(recipe: _Recipe, paths: list[str], hashes: list[str], plan: dict[str, int]) -> str:
    """The same work (extractor, cache, images and their bytes' digests) gets the same key."""
    text = json.dumps([asdict(recipe), paths, hashes, plan], sort_keys=True)
    return f"pinid-shard-{hashlib.sha256(text.encode()).hexdigest()[:32]}"


def _run_shard(recipe: _Recipe, paths: list[str], plan: dict[str, int]) -> _ShardDone:
    """On a worker: the shard through the in-process extractor, features into the cache."""
    host = get_address_host(get_worker().address)
    threads = plan.get(host) or plan.get("*") or os.cpu_count() or 1
    result = _extractor(recipe, threads).extract([Path(p) for p in paths])
    return _ShardDone(result.computed, result.from_cache, result.duplicates, result.unreadable)


@lru_cache(maxsize=4)
def _extractor(recipe: _Recipe, threads: int) -> ImageFeatureExtractor:
    """One extractor per worker process: the CNN loads once, not once per shard."""
    extractor = ImageFeatureExtractor(
        recipe.name,
        fit=recipe.fit,
        batch_size=recipe.batch_size,
        cache_root=Path(recipe.cache_root),
        progress=False,
        threads=threads,
        style=recipe.style,
        engine=recipe.engine,
    )
    if extractor.extractor_id != recipe.extractor_id:
        raise PinidError(
            f"worker {socket.gethostname()} has image extractor {extractor.extractor_id}, the "
            f"client {recipe.extractor_id}: install the same pinid on every machine"
        )
    return extractor.load()


def _check_visible(
    extractor: ImageFeatureExtractor, groups: dict[str, list[int]], unreadable: dict[int, str]
) -> None:
    """Every image a worker computed must now be in the client's cache: if it is not, the
    workers wrote into a folder of the same name that this machine does not share."""
    missing = [
        sha
        for sha, rows in groups.items()
        if not all(row in unreadable for row in rows) and not extractor.cache.contains(sha)
    ]
    if missing:
        raise PinidError(
            f"the workers computed {len(missing)} image features that this machine does not see "
            f"in {extractor.cache.folder}: the cache folder ($PINID_CACHE_DIR) must be shared, "
            "at the same path, by every machine"
        )
