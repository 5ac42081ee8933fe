"""open_clip backbones: the ``clip:`` names of the backbone registry.

- ``clip:<model>`` or ``clip:<model>/<pretrained tag>``: a model built into open_clip
  (``open_clip.list_models()``), e.g. ``clip:ViT-B-32`` or ``clip:ViT-B-32/laion2b_s34b_b79k``. Without a
  tag, the first one open_clip lists for the model is used (``openai`` for ViT-B-32). open_clip downloads
  the weights when online.
- ``clip:local-dir:<folder>``: open_clip's own folder layout (a Hugging Face snapshot, or a model saved
  locally): ``open_clip_config.json`` plus, optionally, a checkpoint such as ``open_clip_model.safetensors``.

Either way ``--weights FILE`` gives the weights instead. The image tower (with its projection into the
shared space) makes the index vectors, through the same engines as every other backbone; the text tower of the
same weights answers text queries (`imagerank.text.clip`). open_clip is imported only for ``clip:`` names.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from imagerank.embedding.spec import BackboneEntry, BackboneSpec
from imagerank.errors import UnknownModelError

if TYPE_CHECKING:
    import torch
    from torch import nn

CLIP_PREFIX = "clip:"
LOCAL_DIR = "local-dir:"
CHECKPOINT_NAMES = (
    "open_clip_model.safetensors",
    "open_clip_pytorch_model.safetensors",
    "open_clip_pytorch_model.bin",
    "open_clip_pytorch_model.pth",
)
"""The checkpoints looked for in a ``local-dir:`` folder, in open_clip's order of preference."""

_INTERPOLATIONS = ("bilinear", "bicubic")


@dataclass(frozen=True)
class ClipName:
    """A ``clip:`` backbone name taken apart: open_clip's model name and the pretrained tag ('' for none)."""

    model: str
    tag: str

    @property
    def folder(self) -> Path | None:
        """The model's folder for ``local-dir:`` names, else None."""
        return (
            Path(self.model.removeprefix(LOCAL_DIR)).expanduser()
            if self.model.startswith(LOCAL_DIR)
            else None
        )


def parse_clip_name(name: str) -> ClipName:
    """``clip:ViT-B-32/openai`` -> ClipName("ViT-B-32", "openai"); a ``local-dir:`` path is kept whole."""
    rest = name.removeprefix(CLIP_PREFIX)
    if rest.startswith(LOCAL_DIR):
        return ClipName(rest, "")
    model, _, tag = rest.partition("/")
    return ClipName(model, tag)


def tokenizer_for(name: str) -> Callable[[list[str]], torch.Tensor]:
    """open_clip's tokenizer for the ``clip:`` backbone ``name`` (texts -> (n, context length) token ids)."""
    import open_clip

    return open_clip.get_tokenizer(parse_clip_name(name).model)


@functools.lru_cache(maxsize=16)
def clip_entry(name: str) -> BackboneEntry:
    """The registry entry for a ``clip:`` name, its preprocessing and size read from open_clip's configs.

    Raises:
        UnknownModelError: open_clip is not installed, or knows no such model or pretrained tag.
    """
    try:
        import open_clip
    except ImportError:
        raise UnknownModelError(
            f"{name!r} needs open_clip: pip install open_clip_torch (or imagerank[clip])"
        ) from None
    parsed = parse_clip_name(name)
    config, preprocess = _model_and_preprocess_config(parsed)
    tag_config: dict = {}
    if parsed.folder is None:
        tags = open_clip.list_pretrained_tags_by_model(parsed.model)
        tag = parsed.tag or (tags[0] if tags else "")
        if parsed.tag and not open_clip.is_pretrained_cfg(parsed.model, parsed.tag):
            known = ", ".join(tags) or "none"
            raise UnknownModelError(
                f"open_clip has no pretrained tag {parsed.tag!r} for {parsed.model} (its tags: {known})"
            )
        parsed = ClipName(parsed.model, tag)
        tag_config = open_clip.get_pretrained_cfg(parsed.model, tag) if tag else {}
        preprocess = {**preprocess, **{key: tag_config[key] for key in preprocess if key in tag_config}}
    size = config["vision_cfg"].get("image_size", 224)
    size = size if isinstance(size, int) else int(size[-1])
    spec = BackboneSpec(
        name=name,
        dim=int(config["embed_dim"]),
        input_size=size,
        resize_size=size,
        interpolation=preprocess["interpolation"]
        if preprocess["interpolation"] in _INTERPOLATIONS
        else "bicubic",
        # "shortest" is open_clip's resize-and-center-crop; "squash" resizes the whole image. "longest"
        # (whole image, padded to a square) comes closest to "squash": nothing at the borders is lost.
        crop=preprocess["resize_mode"] == "shortest",
        mean=tuple(float(value) for value in preprocess["mean"]),  # type: ignore[arg-type]
        std=tuple(float(value) for value in preprocess["std"]),  # type: ignore[arg-type]
    )
    quick_gelu = bool(tag_config.get("quick_gelu", False))
    return BackboneEntry(
        spec=spec,
        build_classifier=functools.partial(_build_clip, parsed.model, quick_gelu),
        to_features=lambda clip: clip.visual,
        weights_file="",
        packaged_weights=functools.partial(_local_checkpoint, parsed, tag_config),
        download=functools.partial(_download, parsed, quick_gelu) if tag_config else None,
        description=f"open_clip {parsed.model}" + (f" ({parsed.tag})" if parsed.tag else ""),
        weights_hint=_weights_hint(parsed, tag_config),
    )


def _model_and_preprocess_config(parsed: ClipName) -> tuple[dict, dict]:
    import open_clip
    from open_clip.transform import PreprocessCfg

    defaults = {key: getattr(PreprocessCfg(), key) for key in ("mean", "std", "interpolation", "resize_mode")}
    folder = parsed.folder
    if folder is not None and not (folder / "open_clip_config.json").is_file():
        raise UnknownModelError(f"{folder} holds no open_clip_config.json (an open_clip model folder)")
    try:
        config = open_clip.get_model_config(parsed.model)
    except (OSError, ValueError) as error:
        raise UnknownModelError(f"cannot read the open_clip config of {parsed.model}: {error}") from error
    if config is None:
        raise UnknownModelError(
            f"open_clip has no model named {parsed.model!r} (see open_clip.list_models(), or use "
            f"clip:local-dir:FOLDER for a folder with an open_clip_config.json)"
        )
    if folder is not None:
        extra = json.loads((folder / "open_clip_config.json").read_text()).get("preprocess_cfg", {})
        defaults.update({key: value for key, value in extra.items() if key in defaults})
    return config, defaults


@contextmanager
def _open_clip_quiet() -> Iterator[None]:
    """Hide what open_clip logs on the root logger while it builds a model ("initialized randomly": imagerank
    loads the weights right after) or downloads one (a failed download is raised, and reported, anyway)."""
    root = logging.getLogger()

    def critical(record: logging.LogRecord) -> bool:
        return record.levelno >= logging.CRITICAL

    root.addFilter(critical)
    try:
        yield
    finally:
        root.removeFilter(critical)


def _build_clip(model: str, quick_gelu: bool) -> nn.Module:
    """The whole CLIP model (both towers), randomly initialised: no download, no base tower weights."""
    import open_clip

    with _open_clip_quiet():
        return open_clip.create_model(
            model,
            load_weights=False,
            force_quick_gelu=quick_gelu,
            pretrained_image=False,
            pretrained_text=False,
        )


def _download(parsed: ClipName, quick_gelu: bool) -> dict[str, torch.Tensor]:
    """The pretrained weights through open_clip's normal download (Hugging Face Hub cache, or a URL)."""
    import open_clip

    with _open_clip_quiet():
        model = open_clip.create_model(
            parsed.model, pretrained=parsed.tag, force_quick_gelu=quick_gelu, require_pretrained=True
        )
    return model.state_dict()


def _local_checkpoint(parsed: ClipName, tag_config: dict) -> Path | None:
    """The checkpoint usable without a network: the one in a ``local-dir:`` folder, or open_clip's earlier
    download of the pretrained tag (in the Hugging Face Hub cache, or ``~/.cache/clip`` for URLs)."""
    if parsed.folder is not None:
        return next(
            (parsed.folder / name for name in CHECKPOINT_NAMES if (parsed.folder / name).is_file()), None
        )
    if tag_config.get("hf_hub"):
        from huggingface_hub import try_to_load_from_cache
        from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

        repo, filename = tag_config["hf_hub"].rstrip("/"), ""
        if not tag_config["hf_hub"].endswith("/"):
            repo, _, filename = tag_config["hf_hub"].rpartition("/")
        candidates = [filename] if filename else [HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME]
        if filename.endswith((".bin", ".pth")):
            candidates.insert(0, filename[:-4] + ".safetensors")
        for candidate in candidates:
            cached = try_to_load_from_cache(repo, candidate)
            if isinstance(cached, str):
                return Path(cached)
        return None
    if tag_config.get("url"):
        return Path("~/.cache/clip").expanduser() / tag_config["url"].rsplit("/", 1)[-1]
    return None


def _weights_hint(parsed: ClipName, tag_config: dict) -> str:
    """Where the weights of this ``clip:`` backbone come from, for the error when they are missing."""
    if parsed.folder is not None:
        return f"put an open_clip checkpoint ({', '.join(CHECKPOINT_NAMES[:3])}) in {parsed.folder}"
    if not tag_config:
        return f"open_clip has no pretrained weights for model {parsed.model!r}"
    hub = tag_config.get("hf_hub", "").rstrip("/")
    source = f"the Hugging Face Hub ({hub})" if hub else tag_config.get("url", "")
    return (
        f"open_clip downloads model {parsed.model!r} with pretrained tag {parsed.tag!r} from {source} "
        f"when online"
    )
