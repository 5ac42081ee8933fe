"""What the command line imports: each command loads only what it needs (benchmarks/cli_latency.py times it).

Every check runs a fresh interpreter, as a user's command does, and reads `sys.modules` at its end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from imagerank import ranking
from imagerank.cli import common as cli_common
from imagerank.embedding import decoding, models
from imagerank.evaluation import protocols
from imagerank.store import ann

DEEP_LEARNING = ("torch", "torchvision", "timm", "onnx", "onnxruntime")
HEAVY = (*DEEP_LEARNING, "sklearn", "scipy", "matplotlib", "fastapi", "uvicorn", "faiss", "ray", "pymilvus")


def loaded_after(code: str) -> tuple[set[str], str]:
    """The top-level modules loaded by a fresh interpreter after `code`, and what it printed."""
    probe = f"{code}\nimport sys, json\nprint(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    completed = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, env=dict(os.environ)
    )
    assert completed.returncode == 0, completed.stderr
    *printed, modules = completed.stdout.strip().splitlines()
    return set(json.loads(modules)), "\n".join(printed)


def run_cli(*args: str | Path) -> str:
    """`imagerank ARGS` in this interpreter's process, as the console script runs it; returns stdout."""
    quoted = ", ".join(repr(str(arg)) for arg in args)
    return f"""
import sys
from imagerank.cli import app
sys.argv = ["imagerank", {quoted}]
try:
    app()
except SystemExit as exit:
    assert exit.code in (0, None), exit.code
"""


def test_help_imports_no_library_module() -> None:
    loaded, printed = loaded_after(run_cli("--help"))
    assert "search" in printed and "evaluate" in printed
    assert not loaded & {*HEAVY, "numpy", "PIL"}, sorted(loaded & {*HEAVY, "numpy", "PIL"})


def test_import_imagerank_is_lazy_and_still_exports_the_api() -> None:
    loaded, printed = loaded_after("import imagerank\nprint(imagerank.Index.__name__, imagerank.__version__)")
    assert printed.startswith("Index 0.")
    assert not loaded & set(DEEP_LEARNING), sorted(loaded & set(DEEP_LEARNING))


def test_search_by_id_loads_no_deep_learning_framework(sample_index_directory: Path) -> None:
    command = run_cli("search", "--id", "3", "--index", sample_index_directory, "--json")
    loaded, printed = loaded_after(command)
    assert len(json.loads(printed)["results"]) == 10
    assert not loaded & set(DEEP_LEARNING), sorted(loaded & set(DEEP_LEARNING))


def test_search_by_file_with_a_cached_export_loads_its_engine_but_not_torch(
    sample_index_directory: Path, sample_dir: Path
) -> None:
    query = sample_dir / "panda" / "image_0001.jpg"
    loaded, printed = loaded_after(run_cli("search", query, "--index", sample_index_directory, "--json"))
    assert json.loads(printed)["results"][0]["path"] == "panda/image_0001.jpg"
    assert loaded & {"openvino", "onnxruntime"}  # the engine `auto` picks, running the cached export
    assert not loaded & {"torch", "torchvision", "timm"}, sorted(loaded & {"torch", "torchvision", "timm"})


def test_the_defaults_the_help_shows_are_the_librarys() -> None:
    assert cli_common.DEFAULT_MODEL == models.DEFAULT_MODEL
    assert cli_common.DEFAULT_METHOD == ranking.DEFAULT_METHOD
    assert cli_common.INDEX_TYPES == ann.INDEX_TYPES
    assert tuple(sorted(decoding.IMAGE_EXTENSIONS)) == cli_common.IMAGE_EXTENSIONS
    assert set(cli_common.PROTOCOL_NAMES) == set(protocols.PROTOCOLS)


@pytest.fixture(scope="module")
def sample_index_directory(cli, sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample indexed by the CLI (which also caches the ONNX export a search by file starts from)."""
    directory = tmp_path_factory.mktemp("startup") / "sample.index"
    result = cli("index", sample_dir, "--index", directory, "-q")
    assert result.returncode == 0, result.stderr
    return directory
