"""The offline text bridge with its real parts: MobileNetV2's ImageNet head, WordNet, all-MiniLM-L6-v2."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from imagerank import Index
from imagerank.errors import UnknownImageError
from imagerank.text.base import MAX_TEXT_CHARS, TextQueryError
from imagerank.text.bridge import SMOOTHED_CANDIDATES, BridgeTextRanker, _neighbour_smoothed, query_words
from imagerank.text.wordnet import imagenet_taxonomy

pytest.importorskip("all_minilm_l6_v2")


@pytest.fixture(scope="session")
def sample_labels(sample_files: list[Path]) -> np.ndarray:
    return np.array([path.parent.name for path in sample_files])


@pytest.fixture(scope="session")
def zero_shot_ranker(sample_vectors: np.ndarray) -> BridgeTextRanker:
    """The bridge fitted on the sample with no labels at all."""
    return BridgeTextRanker("mobilenet_v2").fit(sample_vectors, [None] * len(sample_vectors))


@pytest.fixture(scope="session")
def unlabelled_index(tmp_path_factory: pytest.TempPathFactory, sample_files: list[Path], mobilenet) -> Index:
    """The sample's photos side by side in one folder, so the index has no labels."""
    photos = tmp_path_factory.mktemp("flat-photos")
    for path in sample_files:
        shutil.copy2(path, photos / f"{path.parent.name}-{path.name}")
    index = Index.create(tmp_path_factory.mktemp("flat-index") / "index", embedder=mobilenet)
    index.sync(photos, batch_size=16)
    yield index
    index.close()


def test_query_words_split_folder_names_into_words():
    assert query_words("Faces_easy") == "faces easy"
    assert query_words("carSide") == "car side"
    assert query_words("  A  water-lily ") == "a water lily"


def test_wordnet_places_a_word_without_a_class_next_to_its_kin():
    taxonomy = imagenet_taxonomy()
    nearest = int(np.argmin(taxonomy.distances("ketch")))  # a two-masted sailing vessel: no ImageNet class
    assert taxonomy.class_names[nearest][0] == "schooner"
    assert taxonomy.base_form("mice") == "mouse"
    assert taxonomy.base_form("boxes") == "box"
    assert np.isinf(taxonomy.distances("qwertyuiop")).all()


def test_a_misspelt_word_is_read_as_the_noun_one_slip_away():
    taxonomy = imagenet_taxonomy()
    assert taxonomy.respelled("lilly") == "lily"  # a doubled letter
    assert taxonomy.respelled("dalmation") == "dalmatian"  # a changed letter, in a long word
    assert taxonomy.respelled("chiar", ("windsor",)) == "chair"  # swapped letters, making a WordNet phrase
    assert taxonomy.respelled("happy") is None  # "harpy" is a changed letter away, but the word is short
    assert taxonomy.respelled("lily") is None  # a noun already
    assert taxonomy.noun_costs("water lilly")[0] == ("water_lily", 1.0)
    spelt, misspelt = taxonomy.distances("dalmatian"), taxonomy.distances("dalmation")
    assert int(np.argmin(misspelt)) == int(np.argmin(spelt))
    np.testing.assert_allclose(misspelt, spelt + 1.0)  # one link dearer than the right spelling


def test_smoothing_lifts_a_missed_member_of_a_high_group_and_sinks_a_lone_misfit():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(SMOOTHED_CANDIDATES + 100, 64)).astype(np.float32)
    vectors[:40] = vectors[0] + 0.1 * rng.normal(size=(40, 64))  # a tight group
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    scores = rng.uniform(0.0, 0.5, len(vectors)).astype(np.float32)
    scores[1:40] = 1.0  # the group scores high, but for one member the head missed
    scores[0] = 0.45
    scores[100] = 1.2  # a lone image, unlike the others, scored highest
    smoothed = _neighbour_smoothed(scores, vectors)
    order = list(np.argsort(-smoothed, kind="stable"))
    assert list(np.argsort(-scores)).index(0) > 60  # before: below some 30 unrelated images
    assert order.index(0) <= 40  # after: above every image outside the group but the misfit
    assert smoothed[100] < smoothed[1:40].min()
    rest = np.argsort(-scores)[
        SMOOTHED_CANDIDATES:
    ]  # not candidates: their order kept, below every candidate
    assert order[SMOOTHED_CANDIDATES:] == list(rest)


def test_dalmatian_comes_first_on_the_labelled_sample(sample_index: Index):
    _, ids = sample_index.search_text("dalmatian", k=3)
    records = sample_index.records(ids[0].tolist())
    assert [record.label for record in records] == ["dalmatian"] * 3


def test_an_unlabelled_index_is_searched_zero_shot(unlabelled_index: Index):
    for name in ("dalmatian", "llama", "strawberry"):
        _, ids = unlabelled_index.search_text(f"a photo of a {name}", k=5)
        records = unlabelled_index.records(ids[0].tolist())
        assert all(record.label is None for record in records)
        found = [Path(record.path).name.split("-")[0] for record in records]
        assert found == [name] * 5, (name, found)


def test_every_sample_name_finds_its_own_photos_zero_shot(
    zero_shot_ranker: BridgeTextRanker, sample_labels: np.ndarray
):
    for name in sorted(set(sample_labels)):
        top = np.argsort(-zero_shot_ranker.score(name), kind="stable")[:8]
        assert (sample_labels[top] == name).mean() >= 0.75, name


def test_a_label_name_reaches_the_unlabelled_images_like_its_labelled_ones(
    sample_vectors: np.ndarray, sample_labels: np.ndarray
):
    """'zorblax' means nothing to ImageNet or WordNet: only the labels can answer it."""
    first_half = np.arange(len(sample_labels)) % 8 < 4
    labels = [
        ("zorblax" if label == "umbrella" else str(label)) if known else None
        for label, known in zip(sample_labels, first_half, strict=True)
    ]
    ranker = BridgeTextRanker("mobilenet_v2").fit(sample_vectors, labels)
    for text in ("zorblax", "photos of zorblaxes"):  # matched by meaning, not by equal strings
        top = np.argsort(-ranker.score(text), kind="stable")[:8]
        assert (sample_labels[top] == "umbrella").all(), text
        assert (~first_half[top]).sum() == 4  # the four unlabelled umbrellas, after the four labelled


def test_feedback_on_the_first_results_refines_a_search_by_words(unlabelled_index: Index):
    def folders(ids: list[int]) -> list[str]:
        return [Path(record.path).name.split("-")[0] for record in unlabelled_index.records(ids)]

    first = unlabelled_index.search_text("an animal", k=8)[1][0].tolist()
    assert folders(first).count("llama") < 4  # the words alone find other animals first
    relevant = [image_id for image_id, folder in zip(first, folders(first), strict=True) if folder == "llama"]
    not_relevant = sorted(set(first) - set(relevant))

    refined = unlabelled_index.search_text("an animal", k=8, relevant=relevant, not_relevant=not_relevant)
    assert folders(refined[1][0].tolist()) == ["llama"] * 8
    assert not set(refined[1][0].tolist()) & set(not_relevant)

    # marks of "not relevant" alone push the search away from what was wrong
    wrong = unlabelled_index.search_text("a machine", k=8)[1][0].tolist()
    assert "laptop" not in folders(wrong)
    pushed = unlabelled_index.search_text("a machine", k=8, not_relevant=wrong)[1][0].tolist()
    assert folders(pushed).count("laptop") >= 4
    with pytest.raises(UnknownImageError, match="123456"):
        unlabelled_index.search_text("a machine", relevant=[123456])


def test_feedback_and_a_label_filter_work_together(sample_index: Index):
    _, first = sample_index.search_text("a dog", k=4, labels=["dalmatian", "panda"])
    marked = first[0, :2].tolist()
    _, refined = sample_index.search_text("a dog", k=4, labels=["dalmatian", "panda"], not_relevant=marked)
    kept = refined[0].tolist()
    assert len(kept) == 4 and not set(kept) & set(marked)
    assert {record.label for record in sample_index.records(kept)} <= {"dalmatian", "panda"}


@pytest.mark.parametrize("text", ["", "   \n\t ", "x" * 10_000])
def test_empty_or_too_long_text_is_refused(sample_index: Index, text: str):
    with pytest.raises(TextQueryError, match=r"empty|characters"):
        sample_index.search_text(text)
    assert len("x" * 10_000) > MAX_TEXT_CHARS


def test_evaluate_text_runs_end_to_end(cli, small_sample: Path, tmp_path: Path):
    out = tmp_path / "text.json"
    result = cli("evaluate", small_sample, "--text", "-k", "3", "--out", out)
    assert result.returncode == 0, result.stderr
    assert "zero-shot" in result.stdout and "with labels" in result.stdout
    assert "then feedback on the first 3" in result.stdout
    document = json.loads(out.read_text())
    zero_shot = document["zero_shot"]
    assert zero_shot["images_ranked"] == 12
    assert set(zero_shot["per_name"]) == {"dalmatian", "laptop", "strawberry"}
    assert zero_shot["mean_p@3"] == 1.0
    assert document["with_labels"]["images_ranked"] == 6  # the candidates: 2 per label (1 trains, 1 queries)
    assert document["zero_shot_after_feedback"]["mean_p@3"] == 1.0


def test_only_a_head_fed_by_the_indexed_features_is_used():
    """VGG16's head takes fc2 activations (4096-d): `vgg16_fc2` has a head, `vgg16` (512-d conv5) has none."""
    import torchvision

    from imagerank.errors import ImageRankError
    from imagerank.text.heads import _last_linear

    vgg = torchvision.models.vgg16(weights=None)
    assert _last_linear(vgg, 4096, "vgg16_fc2").weight.shape == (1000, 4096)
    with pytest.raises(ImageRankError, match="no ImageNet-1k classifier head"):
        _last_linear(vgg, 512, "vgg16")


def test_sentence_vectors_are_sentence_transformers_own():
    """The ONNX export with its pooling gives the vectors sentence-transformers computes from the same model,
    for a short text, a batch of mixed lengths and a text longer than the model's 256 tokens (cut there)."""
    sentence_transformers = pytest.importorskip("sentence_transformers")
    from imagerank.text.sentences import encode, model_dir

    texts = ["dalmatian", "a red car in the snow beside a house", "x " * 400, "photos of zorblaxes"]
    reference = sentence_transformers.SentenceTransformer(str(model_dir()), device="cpu").encode(
        texts, normalize_embeddings=True, convert_to_numpy=True
    )
    ours = encode(texts)
    assert ours.shape == (4, 384)
    np.testing.assert_allclose(ours, reference, atol=1e-5)
    np.testing.assert_allclose(encode(texts[1:2]), reference[1:2], atol=1e-5)  # alone, no padding
