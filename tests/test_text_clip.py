"""open_clip backbones and their text search, on a tiny randomly initialised open_clip model (no network).

The vectors and scores are checked against open_clip itself: its own checkpoint loading, preprocessing,
image tower and text tower, run beside imagerank's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import copy_sample
from tiny_clip import TinyClip, write_tiny_clip

from imagerank import Index, create_embedder
from imagerank.embedding.models import get_backbone_entry
from imagerank.errors import UnknownModelError, WeightsNotFoundError
from imagerank.text import create_text_ranker
from imagerank.text.base import TextQueryError
from imagerank.text.clip import PROMPT_TEMPLATE, ClipTextRanker

open_clip = pytest.importorskip("open_clip")
torch = pytest.importorskip("torch")

LABELS = ("dalmatian", "laptop", "pizza", "starfish")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyClip:
    return write_tiny_clip(tmp_path_factory.mktemp("clip"))


@pytest.fixture(scope="module")
def reference(tiny: TinyClip):
    """The tiny model as open_clip itself loads it: its folder, then its checkpoint loader."""
    model = open_clip.create_model(f"local-dir:{tiny.folder}")
    open_clip.load_checkpoint(model, str(tiny.weights))
    return model.eval()


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory, sample_dir: Path) -> Path:
    return copy_sample(sample_dir, tmp_path_factory.mktemp("photos"), labels=LABELS, per_label=3)


@pytest.fixture(scope="module")
def clip_index(tmp_path_factory: pytest.TempPathFactory, tiny: TinyClip, photos: Path):
    directory = tmp_path_factory.mktemp("clip-index") / "index"
    with Index.create(directory, model=tiny.model, weights=tiny.weights) as index:
        report = index.sync(photos)
        assert len(report.indexed) == 12, report.summary()
    with Index.open(directory) as index:  # reopened: the weights file is found again through the manifest
        yield index


def _reference_image_vectors(reference, pixels: np.ndarray) -> np.ndarray:
    from open_clip.transform import PreprocessCfg, image_transform_v2

    normalize = image_transform_v2(
        PreprocessCfg(**reference.visual.preprocess_cfg), is_train=False
    ).transforms[-1]
    batch = normalize(torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255)
    with torch.inference_mode():
        return reference.encode_image(batch, normalize=True).numpy()


def _reference_text_vector(reference, model: str, text: str) -> np.ndarray:
    tokens = open_clip.get_tokenizer(model.removeprefix("clip:"))([PROMPT_TEMPLATE.format(text)])
    with torch.inference_mode():
        return reference.encode_text(tokens, normalize=True)[0].numpy()


def test_builtin_clip_models_take_size_and_preprocessing_from_open_clip() -> None:
    spec = get_backbone_entry("clip:ViT-B-32").spec
    assert (spec.dim, spec.input_size, spec.resize_size, spec.crop) == (512, 224, 224, True)
    assert spec.interpolation == "bicubic" and spec.mean == pytest.approx((0.48145466, 0.4578275, 0.40821073))
    assert get_backbone_entry("clip:ViT-B-32").description == "open_clip ViT-B-32 (openai)"
    tagged = get_backbone_entry("clip:ViT-B-32/laion2b_s34b_b79k")
    assert tagged.description == "open_clip ViT-B-32 (laion2b_s34b_b79k)" and tagged.spec.dim == 512
    siglip = get_backbone_entry("clip:ViT-B-16-SigLIP/webli").spec  # squashes the whole image, as trained
    assert not siglip.crop and siglip.mean == pytest.approx((0.5, 0.5, 0.5))


def test_unknown_clip_models_and_tags_name_what_exists() -> None:
    with pytest.raises(UnknownModelError, match=r"open_clip has no model named 'ViT-Nope'.*list_models"):
        get_backbone_entry("clip:ViT-Nope")
    with pytest.raises(
        UnknownModelError, match=r"no pretrained tag 'nope' for ViT-B-32 \(its tags: openai, "
    ):
        get_backbone_entry("clip:ViT-B-32/nope")
    with pytest.raises(UnknownModelError, match=r"holds no open_clip_config\.json"):
        get_backbone_entry("clip:local-dir:/nonexistent/folder")


def test_offline_without_weights_says_which_model_tag_and_how_to_pass_weights(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import huggingface_hub

    monkeypatch.setenv("IMAGERANK_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))  # nothing downloaded
    with pytest.raises(WeightsNotFoundError) as raised:
        create_embedder("clip:ViT-B-32/laion2b_s34b_b79k", engine="torch")
    message = str(raised.value)
    assert "no pretrained weights for 'clip:ViT-B-32/laion2b_s34b_b79k'" in message
    assert "model 'ViT-B-32' with pretrained tag 'laion2b_s34b_b79k'" in message
    assert "laion/CLIP-ViT-B-32-laion2B-s34B-b79K" in message and "pass --weights FILE" in message


def test_a_model_folder_without_weights_says_where_to_put_them(tiny: TinyClip) -> None:
    with pytest.raises(
        WeightsNotFoundError, match=rf"put an open_clip checkpoint .* in {tiny.folder}; or pass"
    ):
        create_embedder(tiny.model, engine="torch")


def test_index_vectors_are_the_image_towers(tiny: TinyClip, reference, photos: Path) -> None:
    embedder = create_embedder(tiny.model, weights=tiny.weights, engine="torch")
    assert embedder.spec.dim == 32 and embedder.spec.input_size == 32
    assert embedder.spec.interpolation == "bilinear" and embedder.spec.std == (0.25, 0.25, 0.25)
    files = sorted(photos.glob("*/*.jpg"))
    pixels = np.stack([embedder.prepare(path) for path in files])
    np.testing.assert_allclose(
        embedder.embed_arrays(pixels), _reference_image_vectors(reference, pixels), atol=1e-5
    )
    # The preprocessing (Pillow resizing only the cropped region) against open_clip's own resize and crop.
    # They differ by resampling only (about 2 levels in 255 at 32x32 pixels; 20 for a squash, not a crop).
    from open_clip.transform import PreprocessCfg, image_transform_v2
    from PIL import Image

    transform = image_transform_v2(PreprocessCfg(**reference.visual.preprocess_cfg), is_train=False)
    differences = []
    for path in files:
        with Image.open(path) as image:
            ours = embedder.spec.prepare(image).astype(np.float32)
            theirs = image.convert("RGB")
            for step in transform.transforms[:2]:
                theirs = step(theirs)
        differences.append(np.abs(ours - np.asarray(theirs, np.float32)).mean())
    assert np.mean(differences) < 4, differences


@pytest.mark.parametrize("engine", ["onnx", "openvino"])
def test_the_export_engines_run_the_image_tower(tiny: TinyClip, photos: Path, engine: str) -> None:
    pytest.importorskip({"onnx": "onnxruntime", "openvino": "openvino"}[engine])
    files = sorted(photos.glob("*/*.jpg"))
    exported = create_embedder(tiny.model, weights=tiny.weights, engine=engine)
    assert exported.engine_name == engine
    expected = create_embedder(tiny.model, weights=tiny.weights, engine="torch").encode(files)
    np.testing.assert_allclose(exported.encode(files), expected, atol=1e-4)


def test_safetensors_weights_load_like_a_torch_state_dict(
    tiny: TinyClip, photos: Path, tmp_path: Path
) -> None:
    from safetensors.torch import save_file

    converted = tmp_path / "tiny.safetensors"
    state = torch.load(tiny.weights, weights_only=True)
    save_file({key: value.contiguous() for key, value in state.items()}, converted)
    files = sorted(photos.glob("*/*.jpg"))[:3]
    via_safetensors = create_embedder(tiny.model, weights=converted, engine="torch").encode(files)
    via_torch = create_embedder(tiny.model, weights=tiny.weights, engine="torch").encode(files)
    np.testing.assert_array_equal(via_safetensors, via_torch)


def test_text_search_ranks_by_the_text_towers_cosine(clip_index: Index, tiny: TinyClip, reference) -> None:
    ids = np.array(sorted(int(record.id) for record in clip_index.store.all_records()))
    images = clip_index.store.vectors(ids.tolist())
    for text in ("a dog on a sofa", "dalmatian", "  a   slice of pizza "):
        scores, found = clip_index.search_text(text, k=5)
        expected = images @ _reference_text_vector(reference, tiny.model, " ".join(text.split()))
        order = np.argsort(-expected, kind="stable")[:5]
        np.testing.assert_allclose(scores[0], expected[order], atol=1e-5)
        assert found[0].tolist() == ids[order].tolist()
    _, dog_ids = clip_index.search_text("a dog on a sofa", k=12)
    _, pizza_ids = clip_index.search_text("a slice of pizza", k=12)
    assert (
        sorted(dog_ids[0]) == sorted(pizza_ids[0]) == ids.tolist() and dog_ids.tolist() != pizza_ids.tolist()
    )


def test_text_search_keeps_to_the_labels_asked_for(clip_index: Index) -> None:
    scores, ids = clip_index.search_text("a laptop", k=10, labels=["laptop", "pizza"])
    assert (ids[0] >= 0).sum() == 6 and (ids[0, 6:] == -1).all()
    assert {record.label for record in clip_index.records(ids[0, :6])} == {"laptop", "pizza"}
    assert list(scores[0, :6]) == sorted(scores[0, :6], reverse=True)


def test_bad_text_queries_are_refused(clip_index: Index) -> None:
    for text in ("", "   \n\t", "x" * 10_000):
        with pytest.raises(TextQueryError):
            clip_index.search_text(text)


def test_the_ranker_for_a_clip_index_is_the_clip_one_and_loads_its_model_once(tiny: TinyClip) -> None:
    ranker = create_text_ranker(tiny.model, weights=tiny.weights)
    assert isinstance(ranker, ClipTextRanker)
    vectors = np.eye(32, dtype=np.float32)[:4]
    first = ranker.fit(vectors, [None] * 4)
    again = ClipTextRanker(tiny.model, weights=tiny.weights).fit(vectors[:2], ["a", None])
    assert first is ranker and again.text_tower_ is ranker.text_tower_
    assert ranker.score("a cat").shape == (4,) and again.score("a cat").shape == (2,)
    np.testing.assert_allclose(ranker.score("a cat")[:2], again.score("a cat"))
