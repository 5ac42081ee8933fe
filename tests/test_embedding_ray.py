"""The Ray engine on a real local Ray instance gives the in-process engine's vectors, errors and searches.

Starting Ray and its actors takes seconds, so the module runs the engine once: it indexes a copy of the sample
with two bad files added, in two Ray jobs, and the tests compare that index with the in-process one.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from corpus import write_bad_corpus

from imagerank.embedding.embedder import Embedder
from imagerank.embedding.factory import create_embedder
from imagerank.embedding.ray_embedder import EmbeddingActor, RayEmbedder
from imagerank.errors import ModelMismatchError
from imagerank.index.building import IndexReport
from imagerank.index.core import Index

ray = pytest.importorskip("ray")

BAD_FILES = ("dalmatian/truncated.jpg", "strawberry/notes.jpg")


@dataclass
class RayRun:
    photos: Path
    shards: Path
    index: Index
    report: IndexReport


@pytest.fixture(scope="module")
def ray_run(tmp_path_factory: pytest.TempPathFactory, sample_dir: Path) -> Iterator[RayRun]:
    """The sample plus a truncated JPEG and a text file named .jpg, indexed on a local Ray instance.

    82 files, 16 per batch, in jobs of 48 files: the first bad file falls in the first job, the second in
    the second.
    """
    root = tmp_path_factory.mktemp("ray")
    photos = Path(shutil.copytree(sample_dir, root / "photos"))
    write_bad_corpus(root / "corpus")
    for name in BAD_FILES:
        shutil.copy(root / "corpus" / Path(name).name, photos / name)
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        engine = RayEmbedder("mobilenet_v2", files_per_job=50, shard_dir=root / "shards")
        index = Index.create(root / "index", embedder=engine)
        report = index.sync(photos, batch_size=16)
    finally:
        ray.shutdown()
    yield RayRun(photos, root / "shards", index, report)
    index.close()


def test_ray_vectors_equal_the_in_process_ones_in_the_same_order(
    ray_run: RayRun, sample_index: Index
) -> None:
    assert ray_run.index.embedder.engine_name == "ray"
    assert ray_run.index.manifest["vector_id"] == sample_index.manifest["vector_id"]
    expected = sample_index.store.all_records()
    assert ray_run.report.indexed == [record.path for record in expected]  # same paths, in input order
    records = ray_run.index.store.all_records()
    assert [record.path for record in records] == ray_run.report.indexed
    on_ray = ray_run.index.store.vectors([record.id for record in records])
    in_process = sample_index.store.vectors([record.id for record in expected])
    assert on_ray.shape == (80, 1280)
    assert np.abs(on_ray - in_process).max() < 1e-5


def test_bad_files_are_reported_like_in_process_and_the_rest_embedded(
    ray_run: RayRun, mobilenet: Embedder
) -> None:
    bad = [ray_run.photos / name for name in BAD_FILES]
    in_process = [error for batch in mobilenet.iter_encode_files(bad) for error in batch.errors]
    assert [str(error) for error in ray_run.report.skipped] == [str(error) for error in in_process]
    assert [error.path for error in ray_run.report.skipped] == bad
    assert "truncated" in in_process[0].reason and "not an image" in in_process[1].reason
    assert len(ray_run.report.indexed) == 80


def test_index_built_on_ray_answers_searches_like_the_in_process_one(
    ray_run: RayRun, sample_index: Index, sample_vectors: np.ndarray, sample_dir: Path
) -> None:
    scores, ids = ray_run.index.search(sample_vectors, k=10)
    expected_scores, expected_ids = sample_index.search(sample_vectors, k=10)
    assert [r.path for r in ray_run.index.records(ids.ravel())] == [
        r.path for r in sample_index.records(expected_ids.ravel())
    ]
    np.testing.assert_allclose(scores, expected_scores, atol=1e-5)

    query = sample_dir / "pizza" / "image_0002.jpg"  # embedded on the driver, not on Ray
    _, by_file = ray_run.index.search(query, k=5)
    _, expected_by_file = sample_index.search(query, k=5)
    assert [r.path for r in ray_run.index.records(by_file[0])] == [
        r.path for r in sample_index.records(expected_by_file[0])
    ]


def test_shards_are_deleted_once_read(ray_run: RayRun) -> None:
    assert list(ray_run.shards.iterdir()) == []


def test_create_embedder_offers_the_ray_engine() -> None:
    embedder = create_embedder("mobilenet_v2", engine="ray", address="ray://nowhere:10001")
    assert isinstance(embedder, RayEmbedder)
    assert embedder.address == "ray://nowhere:10001"


def test_an_actor_with_another_model_than_the_driver_refuses_to_start() -> None:
    """E.g. a node with other weights: its vectors must not be mixed with the others' (the Ray run above
    shows that actors with the driver's model do start)."""
    with pytest.raises(ModelMismatchError, match="install the same imagerank and weights on every node"):
        EmbeddingActor("mobilenet_v2", None, "cpu", vector_id="mobilenet_v2-other-weights")


def test_a_one_cpu_ray_instance_embeds_instead_of_waiting_forever(
    tmp_path: Path, sample_files: list[Path], mobilenet: Embedder
) -> None:
    """On nodes of 1 CPU an actor reserving the whole CPU left none for decoding and the job waited
    forever. Run in a child process with a timeout, so that a hang fails the test instead of stalling it."""
    files = [str(path) for path in sample_files[:6]]
    script = textwrap.dedent(
        f"""
        import numpy as np, ray
        from imagerank.embedding.ray_embedder import RayEmbedder
        ray.init(num_cpus=1, include_dashboard=False, logging_level="ERROR")
        engine = RayEmbedder("mobilenet_v2", shard_dir={str(tmp_path / "shards")!r})
        batches = list(engine.iter_encode_files({files!r}, batch_size=2))
        np.save({str(tmp_path / "vectors.npy")!r}, np.concatenate([batch.vectors for batch in batches]))
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=300, capture_output=True)
    on_ray = np.load(tmp_path / "vectors.npy")
    in_process = mobilenet.encode(files)
    assert on_ray.shape == in_process.shape == (6, 1280)
    assert np.abs(on_ray - in_process).max() < 1e-5
