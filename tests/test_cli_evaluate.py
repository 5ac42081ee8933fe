"""`imagerank evaluate` end to end: real backbone, embedding cache, methods, table and JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import copy_sample


def test_evaluate_writes_table_and_json_and_reuses_the_embedding_cache(cli, sample_dir: Path, tmp_path: Path):
    out = tmp_path / "result.json"
    arguments = [
        "evaluate", sample_dir, "--protocol", "per-label", "--test-per-label", "6",
        "--queries-per-label", "2", "--methods", "random,cosine,probe+qe", "-k", "5", "--out", out,
    ]  # fmt: skip
    first = cli(*arguments)
    assert first.returncode == 0, first.stderr
    result = json.loads(out.read_text())
    assert (result["n_train"], result["n_candidates"], result["n_queries"]) == (20, 40, 20)
    for method in ("random", "cosine", "probe+qe"):
        assert 0.0 <= result[f"{method}_p@5"] <= 1.0
        low, high = result[f"{method}_p@5_ci95"]
        assert low <= result[f"{method}_p@5"] <= high
        assert len(result[f"{method}_precision_curve"]) == 50
    # 10 clearly distinct categories: cosine on ImageNet features is far above chance (1 in 10)
    assert result["cosine_p@5"] > 0.6 > 0.3 > result["random_p@5"]
    assert "cosine" in first.stdout and "p@5" in first.stdout

    second = cli(*arguments)
    assert second.returncode == 0, second.stderr
    assert json.loads(out.read_text())["embedding_seconds"] < result["embedding_seconds"]
    assert json.loads(out.read_text())["cosine_p@5"] == result["cosine_p@5"]


def test_evaluate_rejects_an_unknown_method_with_the_list_of_methods(cli, sample_dir: Path, tmp_path: Path):
    completed = cli("evaluate", sample_dir, "--methods", "cosine,nonsense", "--out", tmp_path / "r.json")
    assert completed.returncode == 1
    assert "nonsense" in completed.stderr and "probe" in completed.stderr
    assert not (tmp_path / "r.json").exists()


def test_evaluate_rejects_an_empty_backbone_name_in_a_joined_model(cli, sample_dir: Path, tmp_path: Path):
    completed = cli("evaluate", sample_dir, "--model", "mobilenet_v2+", "--out", tmp_path / "r.json")
    assert completed.returncode == 1
    assert "empty backbone name" in completed.stderr
    assert not (tmp_path / "r.json").exists()


def test_evaluate_through_an_index_agrees_with_the_arrays(cli, sample_dir: Path, tmp_path: Path):
    out = tmp_path / "result.json"
    completed = cli(
        "evaluate", sample_dir, "--protocol", "per-label", "--test-per-label", "6",
        "--queries-per-label", "2", "--methods", "cosine,probe+qe,kreciprocal", "-k", "5", "--out", out,
        "--through-index", "hnsw",
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    result = json.loads(out.read_text())
    searched = result["through_index"]
    assert searched["protocol"] == "per-label (through a hnsw index)"
    assert (searched["n_train"], searched["n_candidates"], searched["n_queries"]) == (20, 40, 20)
    # the same labels, pool and candidates, and 40 candidates, all in the shortlist. In the index the other
    # queries are never returned but stay in the collection a method re-ranks with: k-reciprocal re-ranking
    # sees all 20 queries on the arrays too, so it ranks exactly as there; query expansion expands with
    # candidates only on the arrays, with the other queries too in the index
    for method in ("cosine", "kreciprocal"):
        assert searched[f"{method}_p@5"] == pytest.approx(result[f"{method}_p@5"], abs=1e-9)
    assert abs(searched["probe+qe_p@5"] - result["probe+qe_p@5"]) <= 0.1
    assert "through a hnsw index" in " ".join(completed.stdout.split())  # the table title, however wrapped


@pytest.fixture
def ragged_folder(tmp_path: Path, sample_dir: Path) -> Path:
    """What users have: 8 photos per label, one label in a nested folder, and a truncated file."""
    folder = copy_sample(sample_dir, tmp_path / "photos", labels=("pizza", "panda", "starfish"), per_label=8)
    copy_sample(sample_dir, folder / "animals", labels=("llama",), per_label=8)
    data = (folder / "pizza" / "image_0001.jpg").read_bytes()
    (folder / "pizza" / "truncated.jpg").write_bytes(data[: len(data) // 2])
    return folder


def test_evaluate_skips_bad_files_labels_nested_folders_and_picks_a_protocol_that_fits(
    cli, ragged_folder: Path, tmp_path: Path
):
    out = tmp_path / "result.json"
    completed = cli("evaluate", ragged_folder, "--methods", "random,cosine", "-k", "3", "--out", out)
    assert completed.returncode == 0, completed.stderr
    assert f"skipped {ragged_folder.absolute() / 'pizza' / 'truncated.jpg'}: truncated" in completed.stderr
    assert "protocol: per-label (7 images per label searched, 1 of them queries" in completed.stderr
    result = json.loads(out.read_text())
    assert result["protocol"] == "per-label"
    assert result["protocol_parameters"] | {"unseen_labels": []} == {
        "name": "per-label", "test_per_label": 7, "queries_per_label": 1, "seed": 2021, "unseen_labels": [],
    }  # fmt: skip
    assert (result["n_train"], result["n_candidates"], result["n_queries"]) == (4, 24, 4)  # llama counted
    bad = ragged_folder.absolute() / "pizza" / "truncated.jpg"
    assert [item["path"] for item in result["skipped"]] == [str(bad)]
    assert "per-label" in completed.stdout and "1 files skipped" in completed.stdout


def test_evaluate_refusals_name_the_option_that_works(cli, ragged_folder: Path, tmp_path: Path):
    seed = cli("evaluate", ragged_folder, "--protocol", "seed", "--out", tmp_path / "r.json")
    assert seed.returncode == 1
    assert "use --test-per-label 7" in seed.stderr and "--protocol auto" in seed.stderr
    (ragged_folder / "tiny").mkdir()
    photo = (ragged_folder / "panda" / "image_0001.jpg").read_bytes()
    (ragged_folder / "tiny" / "one.jpg").write_bytes(photo)
    tiny = cli("evaluate", ragged_folder, "--out", tmp_path / "r.json")
    assert tiny.returncode == 1 and "'tiny'" in tiny.stderr and "use --min-per-label 3" in tiny.stderr
    fixed = cli(
        "evaluate", ragged_folder, "--min-per-label", "3", "--methods", "cosine", "--test-per-label", "5",
        "--out", tmp_path / "r.json",
    )  # fmt: skip
    assert fixed.returncode == 0, fixed.stderr
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["protocol"] == "per-label" and result["protocol_parameters"]["test_per_label"] == 5
    assert "labels left out (fewer than 3 images): tiny" in fixed.stdout
