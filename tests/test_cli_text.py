"""`imagerank search --text` and the ``clip:`` backbones through the console script (a tiny random open_clip).

The bridge (the text ranker of the other backbones) has tests of its own; an index of a tiny open_clip model
runs the command line's text search end to end without it and without a network.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import copy_sample
from tiny_clip import TinyClip, write_tiny_clip

from imagerank import Index

pytest.importorskip("open_clip")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyClip:
    return write_tiny_clip(tmp_path_factory.mktemp("clip"))


@pytest.fixture(scope="module")
def clip_index(cli, tiny: TinyClip, sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three labels of the sample indexed by `imagerank index --model clip:... --weights FILE`."""
    root = tmp_path_factory.mktemp("cli-clip")
    photos = copy_sample(sample_dir, root / "photos", labels=("dalmatian", "laptop", "pizza"), per_label=4)
    directory = root / "clip.index"
    result = cli(
        "index", photos, "--index", directory, "--model", tiny.model, "--weights", tiny.weights, "-q"
    )
    assert result.returncode == 0, result.stderr
    assert "12 indexed" in result.stderr and "Warning" not in result.stderr
    return directory


def _expected(directory: Path, text: str, k: int, labels: list[str] | None = None) -> list[int]:
    with Index.open(directory) as index:
        return [
            int(image_id) for image_id in index.search_text(text, k, labels=labels)[1][0] if image_id >= 0
        ]


def test_search_by_words_json(cli, clip_index: Path, tiny: TinyClip) -> None:
    result = cli("search", "--text", "a dog on a sofa", "--index", clip_index, "-k", "5", "--json")
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)
    assert output["query"] == {"text": "a dog on a sofa"} and output["model"] == tiny.model
    assert output["method"] == "text"
    results = output["results"]
    assert [result["rank"] for result in results] == [1, 2, 3, 4, 5]
    assert [result["id"] for result in results] == _expected(clip_index, "a dog on a sofa", 5)
    scores = [result["score"] for result in results]
    assert scores == sorted(scores, reverse=True) and all(-1 <= score <= 1 for score in scores)
    other = json.loads(cli("search", "-t", "a slice of pizza", "--index", clip_index, "--json").stdout)
    assert [result["id"] for result in other["results"]] == _expected(clip_index, "a slice of pizza", 10)


def test_search_by_words_keeps_to_labels_and_prints_a_table(cli, clip_index: Path) -> None:
    result = cli(
        "search", "--text", "a laptop", "--index", clip_index, "--label", "laptop", "-k", "3",
        env={"COLUMNS": "200"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    title = " ".join(result.stdout.split())  # the title wraps at the table's width
    assert "Top 3 labelled laptop like the words 'a laptop' (method: text)" in title
    rows = [line for line in result.stdout.splitlines() if line.startswith("│")]
    ids = [int(row.strip("│ ").split("│")[1]) for row in rows]
    assert ids == _expected(clip_index, "a laptop", 3, labels=["laptop"])
    assert all(row.rstrip(" │").endswith("laptop") for row in rows)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the text query is empty"),
        ("   \t ", "the text query is empty"),
        ("a" * 10_000, "the text query has 10000 characters; at most 1000 are accepted"),
    ],
)
def test_empty_blank_or_huge_text_is_a_usage_error(cli, clip_index: Path, text: str, message: str) -> None:
    result = cli("search", "--text", text, "--index", clip_index)
    assert result.returncode == 2 and result.stdout == ""
    assert message in result.stderr


def test_text_goes_alone(cli, clip_index: Path, sample_dir: Path) -> None:
    query = sample_dir / "pizza" / "image_0001.jpg"
    for extra in ([str(query)], ["--id", "1"]):
        result = cli("search", *extra, "--text", "pizza", "--index", clip_index)
        assert (
            result.returncode == 2 and "give only one of a QUERY image file, --id and --text" in result.stderr
        )
    result = cli("search", "--text", "pizza", "--method", "cosine", "--index", clip_index)
    assert result.returncode == 2 and "--method ranks image queries" in result.stderr


def test_the_image_search_of_a_clip_index_uses_its_image_tower(cli, clip_index: Path) -> None:
    with Index.open(clip_index) as index:
        record = next(record for record in index.store.all_records() if record.path == "pizza/image_0001.jpg")
        photo = index.root / record.path
    result = cli("search", photo, "--index", clip_index, "--method", "cosine", "-k", "1", "--json")
    assert result.returncode == 0, result.stderr
    best = json.loads(result.stdout)["results"][0]
    assert best["id"] == record.id and best["score"] == pytest.approx(1.0, abs=1e-4)


def test_a_clip_model_without_weights_offline_exits_1_naming_what_is_missing(
    cli, tmp_path: Path, sample_dir: Path
) -> None:
    photos = copy_sample(sample_dir, tmp_path / "photos", labels=("pizza",), per_label=1)
    env = {"IMAGERANK_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub")}
    result = cli("index", photos, "--index", tmp_path / "x.index", "--model", "clip:ViT-B-32", env=env)
    assert result.returncode == 1, result.stderr
    assert "no pretrained weights for 'clip:ViT-B-32'" in result.stderr
    assert "model 'ViT-B-32' with pretrained tag 'openai'" in result.stderr
    assert "pass --weights FILE" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "x.index" / "manifest.json").exists()
