"""The Ray engine: embed image files on a Ray cluster, or on a local Ray instance, with Ray Data.

Files flow through two Ray Data stages. Decoding and preprocessing run as plain tasks on every node; inference
runs in a pool of actors that each load the backbone once, with the same network and the same ONNX Runtime or
PyTorch choice as `create_embedder`, so the vectors equal the in-process engine's. Each job writes its vectors
to Parquet shards (position, path, vector, error) that the driver reads back, in input order, hands out batch
by batch, and then deletes.

A large collection is embedded in jobs of `files_per_job` files: the index commits one job's vectors before
the next job starts, so an interrupted run keeps what it finished, and the driver never holds more than one
job's vectors. Each job starts its actors afresh (a model load per actor and job: seconds, against the minutes
a job of 50,000 files takes).

Ray is an optional dependency (`pip install 'imagerank[ray]'`), imported only when this engine runs.
"""

from __future__ import annotations

import math
import os
import platform
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

from imagerank.embedding.decoding import open_image
from imagerank.embedding.embedder import EmbeddedBatch, Embedder, create_local_embedder
from imagerank.embedding.models import BackboneSpec
from imagerank.errors import BadImageError, ImageRankError, ModelMismatchError

if TYPE_CHECKING:
    import pyarrow as pa
    import ray.data

SHARDS_ENV = "IMAGERANK_RAY_SHARDS"
INSTALL_HINT = "pip install 'imagerank[ray]'"

# Logical CPUs a decoding task reserves. Less than the actors' 1, which keeps Ray Data from fusing decoding
# into the actors: decoding stays in its own tasks, overlapped with inference, instead of running in turns
# with it inside each actor. Decoding is light next to inference, so two tasks share a core.
DECODE_TASK_CPUS = 0.5
ACTOR_CPUS = 1.0
# When no node has room for an actor and a decoding task (every node has 1 CPU), actors reserving 1 CPU
# would leave none for decoding and the job would wait forever: there they reserve less, so that one of
# each fits on a 1-CPU node (still unequal, so still not fused).
SMALL_NODE_ACTOR_CPUS = 0.75
SMALL_NODE_DECODE_TASK_CPUS = 0.25


class RayEmbedder(Embedder):
    """An embedder whose `iter_encode_files` runs on Ray; `encode` stays in-process.

    `encode` embeds queries, a few images at a time: a cluster round trip would only slow them down, so the
    driver keeps its own copy of the model for them (and for the index's `spec`). That copy runs on the CPU,
    since the driver, often a cluster's head node, may have no GPU.

    If Ray is already initialized in this process, its connection is used as it is. Otherwise the first run
    calls `ray.init(address)` and leaves Ray running for the rest of the process (Ray shuts it down at exit),
    so later runs do not pay for starting it again.

    Args:
        name: backbone name, as for `create_embedder`.
        weights: a state-dict file; on a cluster it must be at the same path on every node.
        device: "cpu", or "cuda" to give each actor one GPU (and run PyTorch there).
        address: the Ray cluster: "auto", "ray://head:10001", or None for `$RAY_ADDRESS` or else a new
            local instance.
        actors: inference actors. Default: one per GPU with `device="cuda"`, else one per node, since ONNX
            Runtime uses every core of its node.
        files_per_job: files embedded per Ray Data job (rounded down to whole batches).
        shard_dir: where jobs write their Parquet shards. On a multi-node cluster every node must see it
            at the same path (a shared filesystem). Default: `$IMAGERANK_RAY_SHARDS`, else a temporary
            folder (enough on one machine).
        decode_workers: decoding threads for `encode` on the driver.

    Example:
        >>> embedder = RayEmbedder("mobilenet_v2", address="auto")
        >>> for batch in embedder.iter_encode_files(paths, batch_size=64):
        ...     store(batch.paths, batch.vectors)
    """

    def __init__(
        self,
        name: str,
        weights: str | Path | None = None,
        device: str = "cpu",
        address: str | None = None,
        actors: int | None = None,
        files_per_job: int = 50_000,
        shard_dir: str | Path | None = None,
        decode_workers: int | None = None,
    ) -> None:
        local = create_local_embedder(name, weights=weights, decode_workers=decode_workers)
        super().__init__(local.spec, local.engine, local.decode_workers)
        self.name = name
        self.weights = str(Path(weights).resolve()) if weights else None
        self.device = device
        self.address = address
        self.actors = actors
        self.files_per_job = files_per_job
        self.shard_dir = shard_dir or os.environ.get(SHARDS_ENV)

    @property
    def engine_name(self) -> str:
        return "ray"

    @property
    def uses_gpu(self) -> bool:
        return self.device.startswith("cuda")

    def iter_encode_files(
        self, paths: Sequence[str | Path], batch_size: int = 32, show_progress_bar: bool = False
    ) -> Iterator[EmbeddedBatch]:
        """Embed files on Ray, batch by batch in input order; bad files come back as errors, never raised."""
        if batch_size < 1:
            raise ImageRankError(f"batch_size must be at least 1, got {batch_size}")
        files = [Path(path) for path in paths]
        if not files:
            return
        ray = connected_ray(self.address)
        shard_root = self._shard_root(ray)
        per_job = max(1, self.files_per_job // batch_size) * batch_size
        try:
            for start in range(0, len(files), per_job):
                job_dir = shard_root / f"job-{start // per_job:06d}"
                job_files = files[start : start + per_job]
                self._run_job(ray, job_files, batch_size, show_progress_bar, job_dir)
                yield from embedded_batches_from_shards(job_dir, len(job_files), batch_size, self.spec.dim)
                shutil.rmtree(job_dir)
        finally:
            shutil.rmtree(shard_root, ignore_errors=True)

    def _run_job(
        self, ray: ModuleType, files: list[Path], batch_size: int, show_progress_bar: bool, shards: Path
    ) -> None:
        """Decode, embed and write one job's files as Parquet shards under `shards`."""
        context = ray.data.DataContext.get_current()
        bars_before = context.enable_progress_bars
        context.enable_progress_bars = show_progress_bar  # read when the dataset is created
        try:
            self._embedded_dataset(ray, files, batch_size).write_parquet(str(shards))
        except ray.exceptions.RayError as error:
            # A node or an actor failed (the error's text holds the remote traceback, e.g. a model mismatch).
            raise ImageRankError(f"the Ray job failed: {error}") from error
        finally:
            context.enable_progress_bars = bars_before

    def _embedded_dataset(self, ray: ModuleType, files: list[Path], batch_size: int) -> ray.data.Dataset:
        """The Ray Data pipeline: rows of (position, path) -> decoded images (tasks) -> vectors (actors)."""
        rows = [{"position": position, "path": str(path)} for position, path in enumerate(files)]
        dataset = ray.data.from_items(rows, override_num_blocks=math.ceil(len(rows) / batch_size))
        decode_cpus, actor_cpus = cpu_reservations(ray)
        decoded = dataset.map_batches(
            decoded_batch,
            fn_kwargs={"spec": self.spec},
            batch_size=batch_size,
            batch_format="numpy",
            num_cpus=decode_cpus,
        )
        return decoded.map_batches(
            EmbeddingActor,
            fn_constructor_kwargs={
                "name": self.name,
                "weights": self.weights,
                "device": self.device,
                "vector_id": self.spec.vector_id(),
            },
            batch_size=batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=self.actors or default_actor_count(ray, self.uses_gpu)),
            num_cpus=actor_cpus,
            num_gpus=1 if self.uses_gpu else 0,
        )

    def _shard_root(self, ray: ModuleType) -> Path:
        """A new, empty folder for this run's shards."""
        if self.shard_dir is None and len(alive_nodes(ray)) > 1:
            raise ImageRankError(
                "this Ray cluster has several nodes, which write vector shards that the driver reads back: "
                f"set {SHARDS_ENV} to a folder on a filesystem every node shares"
            )
        parent = Path(self.shard_dir) if self.shard_dir else None
        if parent is not None:
            parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix="imagerank-ray-", dir=parent))


class EmbeddingActor:
    """A Ray Data actor: loads the backbone once, then embeds the decoded images of each batch it gets.

    It refuses to start when its node's model is not the driver's (other weights, another imagerank), since
    its vectors could not be mixed with the others'.
    """

    def __init__(self, name: str, weights: str | None, device: str, vector_id: str) -> None:
        # Ray gives each GPU actor its own device, visible as the only (first) CUDA device.
        self.embedder = create_local_embedder(
            name, weights=weights, device="cuda" if device.startswith("cuda") else device
        )
        if self.embedder.spec.vector_id() != vector_id:
            raise ModelMismatchError(
                f"Ray node {platform.node()} makes {self.embedder.spec.vector_id()} vectors, the driver "
                f"{vector_id}: install the same imagerank and weights on every node"
            )

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        import pyarrow as pa

        decoded = batch["error"] == ""
        vectors = np.zeros((len(decoded), self.embedder.spec.dim), np.float32)
        if decoded.any():
            vectors[decoded] = self.embedder.embed_arrays(batch["image"][decoded])
        return pa.table(
            {
                "position": batch["position"],
                "path": batch["path"],
                "vector": pa.FixedSizeListArray.from_arrays(vectors.ravel(), self.embedder.spec.dim),
                "error": batch["error"],
            }
        )


def decoded_batch(batch: dict[str, np.ndarray], spec: BackboneSpec) -> dict[str, np.ndarray]:
    """A Ray Data batch of paths with each file decoded and preprocessed, or the reason it could not be.

    Files that fail get an all-zero image, which the actors skip, and a non-empty `error`.
    """
    images = np.zeros((len(batch["path"]), spec.input_size, spec.input_size, 3), np.uint8)
    errors = []
    for row, path in enumerate(batch["path"]):
        try:
            images[row] = spec.prepare(open_image(path, draft_size=spec.resize_size))
        except BadImageError as error:
            errors.append(error.reason)
        else:
            errors.append("")
    return {"position": batch["position"], "path": batch["path"], "image": images, "error": np.array(errors)}


def embedded_batches_from_shards(
    shards: Path, count: int, batch_size: int, dim: int
) -> Iterator[EmbeddedBatch]:
    """The vectors and errors of a job's `count` files from its Parquet shards, in input order, by batch."""
    import pyarrow.parquet as pq

    table = pq.read_table(shards).sort_by("position")
    if not np.array_equal(table["position"].to_numpy(), np.arange(count)):
        raise ImageRankError(f"the Ray job's shards in {shards} miss some files; run the indexing again")
    paths = [Path(path) for path in table["path"].to_pylist()]
    errors = table["error"].to_pylist()
    vectors = table["vector"].combine_chunks().flatten().to_numpy().reshape(-1, dim)
    for start in range(0, len(paths), batch_size):
        chunk = range(start, min(start + batch_size, len(paths)))
        decoded = [row for row in chunk if not errors[row]]
        yield EmbeddedBatch(
            paths=[paths[row] for row in decoded],
            vectors=vectors[decoded],
            errors=[BadImageError(paths[row], errors[row]) for row in chunk if errors[row]],
        )


def connected_ray(address: str | None) -> ModuleType:
    """The `ray` module, connected to the cluster at `address` unless Ray is already initialized here."""
    try:
        import ray
        import ray.data
    except ImportError as error:
        raise ImageRankError(f"the Ray engine needs Ray: {INSTALL_HINT}") from error
    if not ray.is_initialized():
        try:
            ray.init(address=address)
        except ConnectionError as error:
            where = address or os.environ.get("RAY_ADDRESS")
            raise ImageRankError(
                f"cannot reach a Ray cluster at {where}; start one with `ray start --head`, or leave out "
                f"the address to run a local Ray instance ({error})"
            ) from error
    return ray


def alive_nodes(ray: ModuleType) -> list[dict]:
    return [node for node in ray.nodes() if node["Alive"]]


def cpu_reservations(ray: ModuleType) -> tuple[float, float]:
    """Logical CPUs (decoding task, inference actor); smaller when every node has fewer than 1.5."""
    if any(node["Resources"].get("CPU", 0) >= ACTOR_CPUS + DECODE_TASK_CPUS for node in alive_nodes(ray)):
        return DECODE_TASK_CPUS, ACTOR_CPUS
    return SMALL_NODE_DECODE_TASK_CPUS, SMALL_NODE_ACTOR_CPUS


def default_actor_count(ray: ModuleType, uses_gpu: bool) -> int:
    """One actor per GPU in the cluster for GPU inference, else one per node with CPUs to run it."""
    if not uses_gpu:
        return sum(1 for node in alive_nodes(ray) if node["Resources"].get("CPU", 0) >= 1)
    gpus = int(ray.cluster_resources().get("GPU", 0))
    if gpus < 1:
        raise ImageRankError(
            "the Ray cluster has no GPUs for --device cuda; add GPU nodes or use --device cpu"
        )
    return gpus
