"""Shared fixtures: the shipped sample, the real backbone loaded once, a sample index built once, the CLI.

Every test session gets its own empty `IMAGERANK_CACHE`, so the ONNX export runs for real and nothing is
written to the user's cache. The variable is set at import, before any test (or CLI subprocess, which
inherits the environment) can read it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

_SESSION_CACHE = Path(tempfile.mkdtemp(prefix="imagerank-test-cache-"))
os.environ["IMAGERANK_CACHE"] = str(_SESSION_CACHE)

from imagerank.embedding.embedder import Embedder  # noqa: E402
from imagerank.embedding.factory import create_embedder  # noqa: E402
from imagerank.index.building import IndexReport  # noqa: E402
from imagerank.index.core import Index  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample" / "caltech101"
CALTECH = REPO.parent / "shared" / "datasets" / "caltech101" / "101_ObjectCategories"
SAMPLE_LABELS = 10
SAMPLE_PER_LABEL = 8
IMAGERANK_SCRIPT = Path(sys.executable).parent / "imagerank"

CliRunner = Callable[..., subprocess.CompletedProcess]


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(_SESSION_CACHE, ignore_errors=True)


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    """The shipped sample: 10 Caltech-101 labels, 8 photos each, one folder per label."""
    return SAMPLE


@pytest.fixture(scope="session")
def sample_files(sample_dir: Path) -> list[Path]:
    files = sorted(sample_dir.glob("*/*.jpg"))
    assert len(files) == SAMPLE_LABELS * SAMPLE_PER_LABEL
    return files


@pytest.fixture(scope="session")
def caltech_dir() -> Path:
    """The full Caltech-101 dataset beside the repository; tests using it skip when it is absent."""
    if not CALTECH.is_dir():
        pytest.skip(f"Caltech-101 is not at {CALTECH}")
    return CALTECH


@pytest.fixture(scope="session")
def mobilenet() -> Embedder:
    """The default backbone with its real ImageNet weights, on the default engine (ONNX Runtime on CPU)."""
    return create_embedder("mobilenet_v2")


@pytest.fixture(scope="session")
def sample_vectors(mobilenet: Embedder, sample_files: list[Path]) -> np.ndarray:
    """The sample's vectors in `sample_files` order, embedded directly (not through an index)."""
    return mobilenet.encode(sample_files, batch_size=16)


@pytest.fixture(scope="session")
def sample_index_and_report(
    tmp_path_factory: pytest.TempPathFactory, sample_dir: Path, mobilenet: Embedder
) -> Iterator[tuple[Index, IndexReport]]:
    """The sample indexed once. Read-only: tests that change an index build their own."""
    directory = tmp_path_factory.mktemp("sample-index") / "index"
    index = Index.create(directory, embedder=mobilenet)
    report = index.sync(sample_dir, batch_size=16)
    yield index, report
    index.close()


@pytest.fixture(scope="session")
def sample_index(sample_index_and_report: tuple[Index, IndexReport]) -> Index:
    return sample_index_and_report[0]


@pytest.fixture
def small_sample(tmp_path: Path, sample_dir: Path) -> Path:
    """A writable copy of part of the sample: 3 labels x 4 photos under tmp_path/photos."""
    return copy_sample(
        sample_dir, tmp_path / "photos", labels=("dalmatian", "laptop", "strawberry"), per_label=4
    )


def copy_sample(sample_dir: Path, destination: Path, labels: tuple[str, ...], per_label: int) -> Path:
    for label in labels:
        (destination / label).mkdir(parents=True, exist_ok=True)
        for path in sorted((sample_dir / label).glob("*.jpg"))[:per_label]:
            shutil.copy2(path, destination / label / path.name)
    return destination


@pytest.fixture(scope="session")
def imagerank_script() -> Path:
    """The installed `imagerank` console script (the one beside this Python)."""
    assert IMAGERANK_SCRIPT.is_file(), f"the imagerank console script is not installed at {IMAGERANK_SCRIPT}"
    return IMAGERANK_SCRIPT


@pytest.fixture(scope="session")
def cli(imagerank_script: Path) -> CliRunner:
    """Runs the `imagerank` console script in a subprocess, with this process's environment."""

    def run(*args: str | Path, env: dict[str, str] | None = None, timeout: float = 300):
        environment = {**os.environ, **(env or {})}
        return subprocess.run(
            [str(imagerank_script), *map(str, args)],
            capture_output=True,
            text=True,
            env=environment,
            timeout=timeout,
        )

    return run
