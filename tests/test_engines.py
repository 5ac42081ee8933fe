"""Engine registry: the automatic choice, falling back from a missing engine, and OpenVINO's request pool."""

from __future__ import annotations

import logging
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from imagerank.embedding.embedder import ENGINES, Embedder
from imagerank.embedding.engines import engine_available, resolve_engine
from imagerank.embedding.factory import create_embedder
from imagerank.errors import ImageRankError

pytest.importorskip("openvino")


def _uninstall(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    """Make `import module` fail as it does where the package is not installed."""
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)


def test_auto_takes_the_fastest_installed_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_engine("auto") == "openvino"
    assert resolve_engine("auto", device="cuda") == "torch"
    _uninstall(monkeypatch, "openvino")
    assert not engine_available("openvino")
    assert resolve_engine("auto") == "onnx"
    _uninstall(monkeypatch, "onnxruntime")
    assert resolve_engine("auto") == "torch"


def test_a_missing_engine_falls_back_with_a_clear_message(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, sample_files: list[Path]
) -> None:
    _uninstall(monkeypatch, "openvino")
    with caplog.at_level(logging.WARNING, logger="imagerank.embedding.engines"):
        embedder = create_embedder("mobilenet_v2", engine="openvino")
    assert embedder.engine_name == "onnx"
    assert "engine 'openvino' is not installed (pip install openvino); using 'onnx' instead" in caplog.text
    assert embedder.encode(sample_files[:2]).shape == (2, 1280)


def test_unknown_engines_and_cpu_engines_on_a_gpu_are_errors() -> None:
    assert ENGINES == ("auto", "openvino", "onnx", "torch", "ray")
    with pytest.raises(ImageRankError, match="choose one of auto, openvino, onnx, torch, ray"):
        create_embedder("mobilenet_v2", engine="tensorrt")
    with pytest.raises(ImageRankError, match="CPU only; use --engine torch for --device cuda"):
        resolve_engine("openvino", device="cuda")


def test_openvino_engine_shared_by_threads_gives_the_same_vectors(
    mobilenet: Embedder, sample_files: list[Path]
) -> None:
    """Concurrent callers (indexing, server threads) share the infer requests without mixing results."""
    assert mobilenet.engine_name == "openvino"
    batch = np.stack([mobilenet.prepare(path) for path in sample_files[::4]])  # 20 photos
    expected = mobilenet.embed_arrays(batch)
    slices = [slice(0, 20), slice(3, 4), slice(5, 12), slice(0, 1), slice(8, 20), slice(1, 3)] * 4
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda part: mobilenet.embed_arrays(batch[part]), slices))
    for part, vectors in zip(slices, results, strict=True):
        np.testing.assert_allclose(vectors, expected[part], atol=1e-5)


def test_openvino_engine_runs_one_image_per_request_and_empty_batches(
    mobilenet: Embedder, sample_files: list[Path]
) -> None:
    """Compiled for a static shape of one image: a batch of any size is cut into requests, none padded."""
    assert tuple(mobilenet.engine.compiled.input(0).get_shape()) == (1, 224, 224, 3)
    assert mobilenet.embed_arrays(np.zeros((0, 224, 224, 3), np.uint8)).shape == (0, 1280)
    batch = np.stack([mobilenet.prepare(path) for path in sample_files[:3]])
    one_by_one = np.concatenate([mobilenet.embed_arrays(batch[i : i + 1]) for i in range(3)])
    np.testing.assert_array_equal(mobilenet.embed_arrays(batch), one_by_one)
    with pytest.raises(RuntimeError, match="incompatible"):  # raised, not left waiting for a result
        mobilenet.embed_arrays(np.zeros((2, 200, 200, 3), np.uint8))


def test_an_openvino_engine_alive_at_exit_is_freed_while_the_interpreter_is_whole(
    sample_files: list[Path],
) -> None:
    """Freed during the interpreter's shutdown, the request queue could abort the process: freed before."""
    script = f"""
import atexit
engines = []
# registered first, so it runs last, after the engine's own exit hook
atexit.register(lambda: print("freed" if not hasattr(engines[0], "queue") else "alive"))
from imagerank.embedding.factory import create_embedder
embedder = create_embedder("mobilenet_v2", engine="openvino")
engines.append(embedder.engine)
print(embedder.encode([{str(sample_files[0])!r}]).shape[1])
"""
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.split() == ["1280", "freed"]
