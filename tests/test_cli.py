"""The `imagerank` console script, run in subprocesses: exit codes, JSON output, messages, crash safety."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import time
from contextlib import closing
from pathlib import Path

import pytest
from conftest import copy_sample
from corpus import write_bad_corpus

from imagerank.embedding.embedder import Embedder
from imagerank.index.core import Index

SUMMARY = re.compile(r"(\d+) indexed, (\d+) unchanged, (\d+) removed, (\d+) skipped")


def _summary(stderr: str) -> tuple[int, int, int, int]:
    match = SUMMARY.search(stderr)
    assert match, stderr
    return tuple(int(number) for number in match.groups())  # type: ignore[return-value]


@pytest.fixture(scope="session")
def cli_index(cli, sample_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """The sample indexed by `imagerank index`; returns the index directory and the finished process."""
    directory = tmp_path_factory.mktemp("cli") / "sample.index"
    result = cli("index", sample_dir, "--index", directory, "-q")
    return directory, result


def test_index_command(cli_index) -> None:
    directory, result = cli_index
    assert result.returncode == 0, result.stderr
    assert _summary(result.stderr) == (80, 0, 0, 0)
    assert result.stdout == ""
    assert (directory / "manifest.json").is_file()


def test_search_json_by_file(cli, cli_index, sample_dir: Path) -> None:
    directory, _ = cli_index
    query = sample_dir / "starfish" / "image_0002.jpg"
    result = cli("search", query, "--index", directory, "-k", "5", "--json", "--method", "cosine")
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)
    assert output["model"] == "mobilenet_v2" and output["query"] == {"file": str(query)}
    assert output["method"] == "cosine"
    results = output["results"]
    assert len(results) == 5
    assert all({"rank", "score", "path", "label", "id"} <= result.keys() for result in results)
    assert [result["rank"] for result in results] == [1, 2, 3, 4, 5]
    assert results[0]["path"] == "starfish/image_0002.jpg" and results[0]["label"] == "starfish"
    assert results[0]["score"] == pytest.approx(1.0, abs=1e-4)
    scores = [result["score"] for result in results]
    assert scores == sorted(scores, reverse=True) and scores[-1] < 1
    assert len({result["id"] for result in results}) == 5


def test_search_json_by_id_with_label(cli, cli_index) -> None:
    directory, _ = cli_index
    with Index.open(directory) as index:
        image_id = next(
            record.id for record in index.store.all_records() if record.path == "panda/image_0003.jpg"
        )
    result = cli("search", "--id", image_id, "--index", directory, "-k", "3", "--label", "panda", "--json")
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)
    assert output["query"] == {"id": image_id}
    results = output["results"]
    assert len(results) == 3
    assert image_id not in [result["id"] for result in results]
    assert {result["label"] for result in results} == {"panda"}


def test_info_json(cli, cli_index, sample_dir: Path) -> None:
    directory, _ = cli_index
    result = cli("info", "--index", directory, "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["count"] == 80 and info["model"] == "mobilenet_v2" and info["dim"] == 1280
    assert info["labels"] == {path.name: 8 for path in sample_dir.iterdir()}
    assert info["root"] == str(sample_dir.resolve())
    assert info["weights_id"].startswith("mobilenet_v2-b0353104.pth#")


def test_models_json(cli) -> None:
    result = cli("models", "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["mobilenet_v2"]["offline"] is True and rows["efficientnet_lite0"]["offline"] is True
    assert rows["mobilenet_v2"]["weights"].endswith("mobilenet_v2-b0353104.pth")
    assert (rows["vgg16"]["dim"], rows["resnet50"]["dim"]) == (512, 2048)


def test_search_on_a_missing_index_fails_cleanly(cli, tmp_path: Path, sample_dir: Path) -> None:
    missing = tmp_path / "no.index"
    result = cli("search", sample_dir / "pizza" / "image_0001.jpg", "--index", missing, "--json")
    assert result.returncode == 1
    assert f"no imagerank index at {missing}" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert not missing.exists()


def test_indexing_a_missing_folder_is_a_usage_error_that_creates_nothing(cli, tmp_path: Path) -> None:
    directory = tmp_path / "typo.index"
    result = cli("index", tmp_path / "phtos", "--index", directory, env={"COLUMNS": "300"})
    assert result.returncode == 2
    assert "does not exist" in result.stderr and str(tmp_path / "phtos") in result.stderr
    assert not directory.exists()


def test_bad_files_exit_3_and_are_listed_and_unicode_paths_work(
    cli, tmp_path: Path, sample_dir: Path
) -> None:
    folder = tmp_path / "mixed photos"
    expected = write_bad_corpus(folder)
    for name in ("image_0001.jpg", "image_0002.jpg"):
        (folder / "dalmatian").mkdir(exist_ok=True)
        shutil.copy2(sample_dir / "dalmatian" / name, folder / "dalmatian" / name)
    (folder / "[bold]not a photo [red].jpg").write_text("brackets must not be read as console markup")
    expected["[bold]not a photo [red].jpg"] = "not an image"
    shutil.copy2(sample_dir / "dalmatian" / "image_0003.jpg", folder / os.fsdecode(b"caf\xe9.jpg"))
    expected["caf\\xe9.jpg"] = "its name is not valid UTF-8"  # a Latin-1 name, printed with an escape
    good = [name for name, reason in expected.items() if reason is None]
    bad = {name: reason for name, reason in expected.items() if reason is not None}
    directory = tmp_path / "índex with spaces"

    result = cli("index", folder, "--index", directory, "-q")

    assert result.returncode == 3, result.stderr
    skipped_lines = [line for line in result.stderr.splitlines() if line.startswith("skipped ")]
    assert len(skipped_lines) == len(bad)
    for name, keyword in bad.items():
        assert any(
            line.startswith(f"skipped {folder.resolve() / name}: ") and keyword in line
            for line in skipped_lines
        ), (name, skipped_lines)
    assert _summary(result.stderr) == (len(good) + 2, 0, 0, len(bad))

    with Index.open(directory) as index:  # the files with spaces and accents went in under their own names
        labels = {record.path: record.label for record in index.store.all_records()}
    assert labels["sub folder/café photo ü.jpg"] == "sub folder"
    assert sorted(labels) == sorted([*good, "dalmatian/image_0001.jpg", "dalmatian/image_0002.jpg"])


def _committed_rows(database: Path) -> int:
    """Rows another process has committed, read without writing to the database."""
    if not database.is_file():
        return 0
    try:
        with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=1)) as db:
            return int(db.execute("SELECT COUNT(*) FROM images").fetchone()[0])
    except sqlite3.OperationalError:  # not created yet, or momentarily busy
        return 0


def test_killed_indexing_keeps_what_it_committed_and_resumes(
    cli, imagerank_script: Path, tmp_path: Path, sample_dir: Path, mobilenet: Embedder
) -> None:
    photos = tmp_path / "photos"
    for copy in range(2):  # 160 photos: several seconds of work left when the kill comes
        shutil.copytree(sample_dir, photos / f"copy {copy}")
    total = len(list(photos.glob("*/*/*.jpg")))
    assert total == 160
    directory = tmp_path / "crash.index"
    database = directory / "metadata.sqlite"
    log = (tmp_path / "first-run.log").open("w")
    process = subprocess.Popen(
        [str(imagerank_script), "index", str(photos), "--index", str(directory), "--batch-size", "8", "-q"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 240
        while _committed_rows(database) < 16:
            assert process.poll() is None, "indexing ended before it could be killed"
            assert time.monotonic() < deadline, "no rows committed in time"
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
        log.close()
    committed = _committed_rows(database)
    assert 16 <= committed < total

    with Index.open(directory, embedder=mobilenet) as index:
        assert len(index) == committed
        survivors = {record.path: record.id for record in index.store.all_records()}
        first = index.store.all_records()[0]
        scores, ids = index.search(index.path_of(first), k=5, method="cosine")
        found = index.records(ids[0])
        assert len(found) == 5
        assert scores[0, 0] == pytest.approx(1.0, abs=1e-4)
        assert Path(found[0].path).name == Path(first.path).name

    result = cli("index", photos, "--index", directory, "-q")

    assert result.returncode == 0, result.stderr
    assert _summary(result.stderr) == (total - committed, committed, 0, 0)
    with Index.open(directory) as index:
        assert len(index) == total
        after = {record.path: record.id for record in index.store.all_records()}
        assert {path: after[path] for path in survivors} == survivors


def test_index_type_is_switched_reported_with_its_recall_and_kept(
    cli, cli_index, sample_dir: Path, tmp_path: Path
) -> None:
    directory = tmp_path / "copy.index"
    shutil.copytree(cli_index[0], directory)
    result = cli("index", sample_dir, "--index", directory, "--index-type", "hnsw", "-q")
    assert result.returncode == 0, result.stderr
    assert _summary(result.stderr) == (0, 80, 0, 0)  # a new layout re-embeds nothing
    assert "vectors: hnsw (M=32, efSearch=128)" in result.stderr
    assert "recall@10 1.000 against exact search (80 sampled queries, 80 vectors)" in result.stderr
    info = json.loads(cli("info", "--index", directory, "--json").stdout)
    assert info["store"]["index_type"] == "hnsw" and info["store"]["recall"]["vectors"] == 80
    assert json.loads((directory / "manifest.json").read_text())["index_type"] == "hnsw"
    by_id = json.loads(cli("search", "--id", "1", "--index", directory, "--json").stdout)
    assert by_id["results"][0]["label"] == "airplanes"

    result = cli("index", sample_dir, "--index", directory, "-q")  # no flag: the index keeps its layout
    assert "vectors: hnsw" in result.stderr
    result = cli("index", sample_dir, "--index", directory, "--index-type", "annoy", "-q")
    assert result.returncode == 1 and "unknown index type 'annoy'" in result.stderr


def test_search_table_shows_ids_and_names_the_query_image(cli, cli_index) -> None:
    directory, _ = cli_index
    with Index.open(directory) as index:
        ids = {record.path: record.id for record in index.store.all_records()}
    image_id = ids["panda/image_0003.jpg"]
    result = cli("search", "--id", image_id, "--index", directory, "-k", "3", env={"COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    assert f"like id {image_id} (panda/image_0003.jpg)" in result.stdout
    header = next(line for line in result.stdout.splitlines() if "rank" in line)
    columns = [cell.strip() for cell in header.strip("┃ ").split("┃")]
    assert columns == ["rank", "id", "score", "path", "label"]
    rows = [line for line in result.stdout.splitlines() if line.startswith("│")]
    for row in rows:  # the id column holds the id of the path beside it: ready for the next --id
        cells = [cell.strip() for cell in row.strip("│ ").split("│")]
        assert ids[cells[3]] == int(cells[1])
    assert len(rows) == 3


def test_an_unknown_label_is_an_error_naming_the_labels(cli, cli_index) -> None:
    directory, _ = cli_index
    result = cli("search", "--id", "5", "--index", directory, "--label", "cat")
    assert result.returncode == 1 and result.stdout == ""
    assert "no indexed image has the label 'cat'" in result.stderr and "panda" in result.stderr


def test_search_without_a_query_says_what_to_give(cli, cli_index) -> None:
    directory, _ = cli_index
    result = cli("search", "--index", directory)
    assert result.returncode == 2
    assert "give a QUERY image file, or --id N" in result.stderr and "not both" not in result.stderr


def test_models_prints_whole_weight_paths_on_an_80_column_terminal(cli) -> None:
    rows = {row["name"]: row for row in json.loads(cli("models", "--json").stdout)}
    result = cli("models", env={"COLUMNS": "80"})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    last_cells = "".join(line.rstrip(" │").split("│")[-1].strip() for line in lines if line.startswith("│"))
    assert rows["mobilenet_v2"]["weights"] in last_cells and "…" not in result.stdout


def test_help_texts_show_their_defaults_without_stray_spaces(cli) -> None:
    defaults = {"index": "default: mobilenet_v2", "evaluate": "default: evaluation-PROTOCOL-MODEL.json"}
    for command, default in defaults.items():
        result = cli(command, "--help", env={"COLUMNS": "250"})
        assert result.returncode == 0, result.stderr
        assert default in result.stdout
        assert not re.search(r"\w \.", result.stdout), re.findall(r".{30}\w \..{10}", result.stdout)


def test_evaluate_takes_top_k_as_the_other_commands_do(cli) -> None:
    result = cli("evaluate", "--help", env={"COLUMNS": "250"})
    assert "--top-k" in result.stdout and "-k" in result.stdout


def test_a_skipped_file_is_remembered_until_it_changes(cli, tmp_path: Path, sample_dir: Path) -> None:
    """Exit code 3 stays while the folder holds a bad file, but the file is not decoded again: here the bad
    file is secretly swapped for a good image of the same size and time, and only touching it gets it read."""
    folder = copy_sample(sample_dir, tmp_path / "photos", labels=("pizza",), per_label=2)
    good = (folder / "pizza" / "image_0001.jpg").read_bytes()
    bad = folder / "pizza" / "broken.jpg"
    bad.write_bytes(b"not an image at all".ljust(len(good) + 100, b"\0"))
    directory = tmp_path / "photos.index"

    first = cli("index", folder, "--index", directory, "-q")
    assert first.returncode == 3 and _summary(first.stderr) == (2, 0, 0, 1)
    assert f"skipped {bad.resolve()}: not an image" in first.stderr
    with closing(sqlite3.connect(directory / "metadata.sqlite")) as db:
        [(path, size, reason)] = db.execute("SELECT path, size, reason FROM skipped").fetchall()
    assert (path, size, reason) == ("pizza/broken.jpg", len(good) + 100, "not an image (unrecognized format)")

    stat = bad.stat()
    bad.write_bytes(good + b"\0" * 100)  # a valid JPEG now (trailing bytes are ignored), same size
    os.utime(bad, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    second = cli("index", folder, "--index", directory, "-q")
    assert second.returncode == 3 and _summary(second.stderr) == (0, 2, 0, 1)
    assert "1 as before, not read again" in second.stderr
    assert f"skipped {bad.resolve()}: not an image" in second.stderr

    os.utime(bad)  # changed: read again, and indexed
    third = cli("index", folder, "--index", directory, "-q")
    assert third.returncode == 0, third.stderr
    assert _summary(third.stderr) == (1, 2, 0, 0)
    with closing(sqlite3.connect(directory / "metadata.sqlite")) as db:
        assert db.execute("SELECT COUNT(*) FROM skipped").fetchone() == (0,)
