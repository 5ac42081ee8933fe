"""Device check: the PyTorch engine on a GPU gives the CPU reference's vectors, and how fast it is.

Run on a machine with CUDA: python scripts/gpu_check.py [--weights-mobilenet FILE]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

from imagerank.embedding.factory import create_embedder


def main() -> None:
    files = sorted(Path("sample/caltech101").glob("*/*.jpg"))
    print(f"torch {torch.__version__}, cuda {torch.cuda.is_available()}, {torch.cuda.get_device_name(0)}")
    for model in ("mobilenet_v2", "efficientnet_lite0"):
        cpu = create_embedder(model, engine="onnx")
        gpu = create_embedder(model, engine="torch", device="cuda")
        reference, on_gpu = cpu.encode(files), gpu.encode(files)
        cosine = np.sum(reference * on_gpu, axis=1)
        batch = np.random.default_rng(0).integers(0, 256, (256, 224, 224, 3), dtype=np.uint8)
        gpu.embed_arrays(batch)
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(20):
            gpu.embed_arrays(batch)
        torch.cuda.synchronize()
        rate = 20 * len(batch) / (time.perf_counter() - start)
        many = files * 25
        start = time.perf_counter()
        gpu.encode(many, batch_size=128)
        end_to_end = len(many) / (time.perf_counter() - start)
        print(
            f"{model}: min cosine GPU vs CPU reference {cosine.min():.6f} (mean {cosine.mean():.6f}); "
            f"pure inference {rate:.0f} img/s at batch 256; end-to-end {end_to_end:.0f} img/s "
            f"({len(many)} files, decode_workers={gpu.decode_workers})"
        )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
