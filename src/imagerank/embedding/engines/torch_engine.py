"""The PyTorch engine: the reference implementation, and the one that runs on a GPU."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from imagerank.embedding.models import BackboneSpec


class TorchEngine:
    """Runs the network in PyTorch on `device` ("cpu", "cuda", "cuda:1", ...)."""

    name = "torch"

    def __init__(
        self, network: nn.Module, spec: BackboneSpec, device: str = "cpu", latency: bool = False
    ) -> None:
        self.device = torch.device(device)
        self.network = network.to(self.device).eval()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        if not batch.flags.writeable:  # a single decoded image is a read-only view of Pillow's pixels
            batch = batch.copy()
        with torch.inference_mode():
            features = self.network(torch.from_numpy(batch).to(self.device))
        return features.float().cpu().numpy()
