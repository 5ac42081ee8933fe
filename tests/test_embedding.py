"""Embedding with real weights: vector format, determinism, engines vs PyTorch, bad files, meaning."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from corpus import write_bad_corpus

from imagerank.embedding.embedder import Embedder, cache_dir
from imagerank.embedding.engines import AUTO_ORDER, engine_available
from imagerank.embedding.factory import create_embedder
from imagerank.errors import BadImageError, ImageRankError

CPU_ENGINES = [name for name in AUTO_ORDER if name != "torch"]


def _nearest_other_label_rate(vectors: np.ndarray, labels: list[str]) -> float:
    """How often the most similar other image has the same label (leave-one-out 1-NN accuracy)."""
    similarities = vectors @ vectors.T
    np.fill_diagonal(similarities, -np.inf)
    nearest = similarities.argmax(axis=1)
    return float(np.mean(np.asarray(labels)[nearest] == np.asarray(labels)))


def test_vectors_are_unit_length_float32(sample_vectors: np.ndarray, mobilenet: Embedder) -> None:
    assert mobilenet.engine_name == "openvino"  # the default engine on a CPU
    assert sample_vectors.dtype == np.float32
    assert sample_vectors.shape == (80, 1280) == (80, mobilenet.spec.dim)
    np.testing.assert_allclose(np.linalg.norm(sample_vectors, axis=1), 1.0, atol=1e-5)
    assert len(np.unique(sample_vectors.round(4), axis=0)) == 80  # distinct photos, distinct vectors


def test_same_image_twice_gives_identical_vectors(mobilenet: Embedder, sample_files: list[Path]) -> None:
    first, again, other = mobilenet.encode([sample_files[0], sample_files[0], sample_files[40]])
    np.testing.assert_array_equal(first, again)
    assert float(first @ other) < 0.99


def test_vectors_do_not_depend_on_order_or_batch_size(
    mobilenet: Embedder, sample_files: list[Path], sample_vectors: np.ndarray
) -> None:
    backwards = mobilenet.encode(sample_files[::-1], batch_size=7)[::-1]
    np.testing.assert_allclose(backwards, sample_vectors, atol=1e-6)
    one_by_one = mobilenet.encode(sample_files[:3], batch_size=1)
    np.testing.assert_allclose(one_by_one, sample_vectors[:3], atol=1e-6)


def test_encode_of_nothing_and_bad_batch_size(mobilenet: Embedder) -> None:
    assert mobilenet.encode([]).shape == (0, 1280)
    with pytest.raises(ImageRankError, match="batch_size"):
        mobilenet.encode([], batch_size=0)


def test_one_image_gives_its_row_of_a_batch(mobilenet: Embedder, sample_files: list[Path]) -> None:
    """A single image (a search query) skips the threaded pipeline; its vector must not change."""
    batch = mobilenet.encode(sample_files[:4])
    np.testing.assert_allclose(mobilenet.encode([sample_files[2]]), batch[2:3], atol=1e-6)


@pytest.fixture(scope="module")
def torch_reference(sample_files: list[Path]) -> dict[str, Embedder]:
    """PyTorch, the reference engine, for both offline backbones."""
    return {name: create_embedder(name, engine="torch") for name in ("mobilenet_v2", "efficientnet_lite0")}


@pytest.mark.parametrize("latency", [False, True], ids=["throughput", "latency"])
@pytest.mark.parametrize("engine", CPU_ENGINES)
@pytest.mark.parametrize("name", ["mobilenet_v2", "efficientnet_lite0"])
def test_engines_agree_with_pytorch(
    name: str, engine: str, latency: bool, sample_files: list[Path], torch_reference: dict[str, Embedder]
) -> None:
    if not engine_available(engine):
        pytest.skip(f"{engine} is not installed")
    files = sample_files[::8]  # one photo per label
    embedder = create_embedder(name, engine=engine, latency=latency)
    reference = torch_reference[name]
    assert (reference.engine_name, embedder.engine_name) == ("torch", engine)
    assert embedder.spec == reference.spec

    actual = embedder.encode(files, batch_size=4)

    cosines = np.sum(reference.encode(files) * actual, axis=1)
    assert cosines.min() > 1 - 1e-4
    assert cache_dir() == Path(os.environ["IMAGERANK_CACHE"])
    exported = list((cache_dir() / "onnx").glob(f"{name}-*.onnx"))
    assert len(exported) == 1 and exported[0].stat().st_size > 1_000_000


def test_encode_raises_on_a_bad_file(mobilenet: Embedder, sample_files: list[Path], tmp_path: Path) -> None:
    bad = tmp_path / "notes.jpg"
    bad.write_text("not a photo")
    with pytest.raises(BadImageError) as caught:
        mobilenet.encode([sample_files[0], bad])
    assert caught.value.path == bad
    assert "not an image" in caught.value.reason


def test_iter_encode_files_reports_bad_files_and_embeds_good_ones(
    mobilenet: Embedder, sample_files: list[Path], sample_vectors: np.ndarray, tmp_path: Path
) -> None:
    expected = write_bad_corpus(tmp_path / "corpus")
    corpus_files = [tmp_path / "corpus" / name for name in expected]
    photos = [sample_files[0], sample_files[33], sample_files[79]]
    files = [photos[0], *corpus_files[:6], photos[1], *corpus_files[6:], photos[2]]

    batches = list(mobilenet.iter_encode_files(files, batch_size=4))

    errors = {error.path: error.reason for batch in batches for error in batch.errors}
    bad = {tmp_path / "corpus" / name: reason for name, reason in expected.items() if reason is not None}
    assert errors.keys() == bad.keys()
    for path, keyword in bad.items():
        assert keyword in errors[path], (path, errors[path])
    embedded = [path for batch in batches for path in batch.paths]
    assert embedded == [path for path in files if path not in bad]
    vectors = np.concatenate([batch.vectors for batch in batches])
    assert vectors.shape == (len(embedded), 1280)
    rows = [embedded.index(photo) for photo in photos]
    np.testing.assert_allclose(vectors[rows], sample_vectors[[0, 33, 79]], atol=1e-6)


def test_nearest_other_sample_photo_has_the_same_label(
    sample_vectors: np.ndarray, sample_files: list[Path]
) -> None:
    """MobileNetV2 puts 79 of the 80 sample photos next to one of their own label (random: about 9%)."""
    labels = [path.parent.name for path in sample_files]
    assert _nearest_other_label_rate(sample_vectors, labels) >= 0.95


def test_nearest_neighbour_label_on_caltech(mobilenet: Embedder, caltech_dir: Path) -> None:
    """Every 10th Caltech-101 category, 5 photos each: measured 0.87 leave-one-out (random: about 7%)."""
    categories = sorted(p.name for p in caltech_dir.iterdir() if p.is_dir() and p.name != "BACKGROUND_Google")
    files = [path for name in categories[::10] for path in sorted((caltech_dir / name).glob("*.jpg"))[:5]]
    assert len(files) >= 50
    vectors = mobilenet.encode(files)
    assert _nearest_other_label_rate(vectors, [path.parent.name for path in files]) >= 0.75
