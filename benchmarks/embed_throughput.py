"""Embedding throughput of every engine: pure inference and end to end (files -> vectors), on two file sets.

Usage:
    python benchmarks/embed_throughput.py [--images 2000] [--photos 210] [--engines openvino,onnx,torch]
        [--models mobilenet_v2,efficientnet_lite0]

File sets: a spread sample of Caltech-101 (small JPEGs, about 300x200), and phone-sized photos generated once
from Caltech images into a cache folder (not committed): 12-megapixel JPEGs (4032x3024, quality 92, with mild
sensor-like noise: about 1.3 MB each, so their draft-mode decoding speed is that of real phone JPEGs) and
12-megapixel HEICs with a 320x240 preview, as phones write them.

Every measurement runs in a fresh process, one engine at a time: pure inference on already-decoded uint8
batches (before and after the pipeline runs, averaged, so drift of a shared machine stays out of their ratio),
then the full pipeline from files to vectors. The peak resident memory of that process is reported (it
includes the 512 pre-decoded images kept for the inference runs, about 75 MiB). Then, per engine with its
latency setting, the time to embed one query image (decode included) as a search by upload does. And
`imagerank index` of the Caltech sample as a command, with its peak memory. Run it alone on the machine
(`flock /tmp/heavy.lock ...`): the load average is printed with the tables.
"""

from __future__ import annotations

import argparse
import io
import multiprocessing
import os
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image
from rich.console import Console
from rich.table import Table

from imagerank.embedding.decoding import scan_image_files
from imagerank.embedding.engines import AUTO_ORDER, engine_available
from imagerank.embedding.factory import create_embedder

DATASET = Path(__file__).resolve().parents[2] / "shared/datasets/caltech101/101_ObjectCategories"
PHOTOS = Path(tempfile.gettempdir()) / "imagerank-bench-photos-v1"
PHOTO_SIZE = (4032, 3024)


def spread_sample(files: list[Path], count: int) -> list[Path]:
    """Every n-th file, so all categories (and their image sizes) are represented."""
    step = max(1, len(files) // count)
    return files[::step][:count]


def images_per_second(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("nan")


def phone_photos(sources: list[Path], count: int) -> dict[str, list[Path]]:
    """12 MP JPEGs (two thirds) and HEICs (one third) made from `sources`, generated once and cached."""
    import pillow_heif

    pillow_heif.register_heif_opener()
    made: dict[str, list[Path]] = {"12 MP JPEG": [], "12 MP HEIC": []}
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 2, (PHOTO_SIZE[1], PHOTO_SIZE[0], 3)).astype(np.int16)  # shifted for each photo
    for number, source in enumerate(spread_sample(sources, count)):
        heic = number % 3 == 2
        path = PHOTOS / f"{number:04d}.{'heic' if heic else 'jpg'}"
        made["12 MP HEIC" if heic else "12 MP JPEG"].append(path)
        if path.is_file():
            continue
        upscaled = np.asarray(Image.open(source).convert("RGB").resize(PHOTO_SIZE, Image.Resampling.BICUBIC))
        shifted = np.roll(noise, tuple(rng.integers(0, 1000, 2)), axis=(0, 1))
        noisy = np.clip(upscaled + shifted, 0, 255).astype(np.uint8)
        photo, stream = Image.fromarray(noisy), io.BytesIO()
        if heic:
            photo.save(
                stream, format="HEIF", quality=80, thumbnails=[320], enc_params={"preset": "ultrafast"}
            )
        else:
            photo.save(stream, format="JPEG", quality=92)
        PHOTOS.mkdir(parents=True, exist_ok=True)
        path.with_suffix(".partial").write_bytes(stream.getvalue())
        path.with_suffix(".partial").replace(path)
    return made


def engine_measurements(model: str, engine: str, file_sets: dict[str, list[Path]], batch_size: int) -> dict:
    """In one fresh process: pure inference, each file set end to end, pure inference again."""
    embedder = create_embedder(model, engine=engine)
    caltech = file_sets["Caltech"]
    decoded = np.stack([embedder.prepare(path) for path in caltech[: min(len(caltech), 512)]])
    batches = [decoded[i : i + batch_size] for i in range(0, len(decoded), batch_size)]
    embedder.embed_arrays(batches[0])  # warm-up: thread pools, memory arenas

    def pure_inference() -> float:
        start = time.perf_counter()
        for batch in batches:
            embedder.embed_arrays(batch)
        return images_per_second(len(decoded), time.perf_counter() - start)

    before = pure_inference()
    end_to_end, vectors = {}, {}
    for name, files in file_sets.items():
        start = time.perf_counter()
        vectors[name] = embedder.encode(files, batch_size=batch_size)[:64]
        end_to_end[name] = images_per_second(len(files), time.perf_counter() - start)
    peak_mib = peak_resident_mib()
    after = pure_inference()
    return {
        "engine": embedder.engine_name,
        "inference": (before + after) / 2,
        "end_to_end": end_to_end,
        "vectors": vectors,
        "peak_mib": peak_mib,
    }


def query_latency(model: str, engine: str, queries: dict[str, list[Path]]) -> dict[str, float]:
    """Median milliseconds to embed one image file, decoding included, with the engine's latency setting."""
    embedder = create_embedder(model, engine=engine, latency=True)
    medians = {}
    for name, files in queries.items():
        for path in files[:3]:
            embedder.encode([path])  # warm-up
        seconds = []
        for path in files:
            start = time.perf_counter()
            embedder.encode([path])
            seconds.append(time.perf_counter() - start)
        medians[name] = 1000 * float(np.median(seconds))
    return medians


def peak_resident_mib() -> float:
    """This process's peak resident memory (VmHWM; ru_maxrss would include the parent's before exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def in_fresh_process(function, *args):
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


def index_command(files: list[Path], engine: str) -> tuple[float, float]:
    """`imagerank index` of `files` (linked into one folder): wall seconds and peak MiB of the command."""
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch, "photos")
        for path in files:
            (folder / path.parent.name).mkdir(parents=True, exist_ok=True)
            (folder / path.parent.name / path.name).symlink_to(path)
        imagerank = Path(sys.executable).parent / "imagerank"
        command = ["/usr/bin/time", "-f", "%M", imagerank, "index", folder, "-i", Path(scratch, "i")]
        start = time.perf_counter()
        done = subprocess.run([*map(str, command), "--engine", engine], capture_output=True, text=True)
        seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"imagerank index failed: {done.stderr}")
    return seconds, int(done.stderr.split()[-1]) / 1024  # GNU time: peak resident KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000, help="Caltech-101 files")
    parser.add_argument("--photos", type=int, default=210, help="generated 12 MP photos (1/3 HEIC)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--models", default="mobilenet_v2,efficientnet_lite0")
    parser.add_argument("--engines", default=",".join(name for name in AUTO_ORDER if engine_available(name)))
    args = parser.parse_args()
    if not DATASET.is_dir():
        sys.exit(f"dataset not found at {DATASET}; this benchmark needs Caltech-101")
    caltech = scan_image_files(DATASET).files
    file_sets = {"Caltech": spread_sample(caltech, args.images), **phone_photos(caltech[1::2], args.photos)}
    engines = args.engines.split(",")
    load = os.getloadavg()[0]
    seconds, peak_mib = index_command(file_sets["Caltech"], "auto")

    throughput = Table(
        title=f"Embedding throughput, img/s (batch {args.batch_size}; cores: {os.cpu_count()})"
    )
    for column in (
        "model",
        "engine",
        "pure inference",
        *(f"{name} ({len(files)})" for name, files in file_sets.items()),
        "Caltech e2e / inference",
        "min cosine vs torch",
        "peak MiB",
    ):
        throughput.add_column(column, justify="right")
    for model in args.models.split(","):
        rows = {
            engine: in_fresh_process(engine_measurements, model, engine, file_sets, args.batch_size)
            for engine in engines
        }
        reference = rows.get("torch")
        for row in rows.values():
            cosine = (
                ""
                if reference is None
                else min(
                    float(np.min(np.sum(reference["vectors"][name] * row["vectors"][name], axis=1)))
                    for name in file_sets
                )
            )
            throughput.add_row(
                model,
                row["engine"],
                f"{row['inference']:.0f}",
                *(f"{row['end_to_end'][name]:.1f}" for name in file_sets),
                f"{row['end_to_end']['Caltech'] / row['inference']:.2f}",
                cosine if isinstance(cosine, str) else f"{cosine:.6f}",
                f"{row['peak_mib']:.0f}",
            )

    queries = {
        "Caltech file": file_sets["Caltech"][:: max(1, len(file_sets["Caltech"]) // 40)][:40],
        "12 MP JPEG": file_sets["12 MP JPEG"][:15],
        "12 MP HEIC": file_sets["12 MP HEIC"][:15],
    }
    latency = Table(title="One query image embedded (decode included, latency setting), p50 ms, mobilenet_v2")
    for column in ("engine", *queries):
        latency.add_column(column, justify="right")
    for engine in engines:
        medians = in_fresh_process(query_latency, "mobilenet_v2", engine, queries)
        latency.add_row(engine, *(f"{medians[name]:.1f}" for name in queries))

    console = Console(width=200)
    console.print(throughput)
    console.print(latency)
    console.print(
        f"`imagerank index` of the {len(file_sets['Caltech'])} Caltech files (auto engine, mobilenet_v2): "
        f"{seconds:.1f} s including start-up, peak memory {peak_mib:.0f} MiB"
    )
    console.print(f"load average (1 min) before the run: {load:.2f}; after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
