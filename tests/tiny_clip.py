"""A tiny, randomly initialised open_clip model to test the ``clip:`` backbone and its text search offline.

It is an open_clip model folder (``open_clip_config.json``, as open_clip's ``local-dir:`` names read it) plus
a separate state-dict file for ``--weights``: the real loading, indexing and text search code runs, in this
process or in the CLI and server subprocesses, with no network and in a fraction of a second.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

TINY_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    # open_clip's BPE tokenizer yields ids up to 49407, so the vocabulary keeps its full size.
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}
TINY_PREPROCESS = {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "interpolation": "bilinear"}


@dataclass(frozen=True)
class TinyClip:
    """The tiny model: its ``clip:`` backbone name and its weights file."""

    model: str
    weights: Path
    folder: Path


def write_tiny_clip(directory: Path, seed: int = 0) -> TinyClip:
    """Write the tiny model's folder and its random weights (a torch.save'd state dict) under `directory`."""
    import open_clip
    import torch

    folder = directory / "tiny-clip"
    folder.mkdir(parents=True, exist_ok=True)
    config = {"model_cfg": TINY_CONFIG, "preprocess_cfg": TINY_PREPROCESS}
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    torch.manual_seed(seed)
    model = open_clip.create_model(f"local-dir:{folder}", load_weights=False)
    weights = directory / "tiny-clip.pt"
    torch.save(model.state_dict(), weights)
    return TinyClip(f"clip:local-dir:{folder}", weights, folder)


def index_with_tiny_clip(tiny: TinyClip, photos: Path, directory: Path) -> Path:
    """`photos` indexed with the tiny model (weights through --weights, kept in the manifest); its folder."""
    from imagerank import Index

    with Index.create(directory, model=tiny.model, weights=tiny.weights) as index:
        report = index.sync(photos)
    assert not report.skipped, report.summary()
    return directory
