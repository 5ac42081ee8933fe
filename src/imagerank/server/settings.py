"""Typed server settings, read from arguments and `IMAGERANK_*` environment variables.

There is no module-level settings object: `create_app` builds one and routes receive it through
`deps.SettingsDep`, so tests and several apps in one process never share hidden state.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

MIB = 2**20


class ServerSettings(BaseSettings):
    """What `imagerank serve` can be told. Each field also reads `IMAGERANK_<FIELD>` from the environment."""

    model_config = SettingsConfigDict(env_prefix="IMAGERANK_", extra="ignore")

    index: Path = Field(description="Index directory to serve.")
    engine: str = Field(
        "auto", description="Inference engine for query images: auto, openvino, onnx or torch."
    )
    weights: Path | None = Field(None, description="State-dict file instead of the installed weights.")
    max_upload_bytes: int = Field(20 * MIB, gt=0, description="Largest request body (an upload) accepted.")
    thumbnail_size: int = Field(256, ge=32, le=1024, description="Longest side of thumbnails, in pixels.")
    thumbnails_dir: Path | None = Field(None, description="Thumbnail cache; default: <index>/thumbnails.")
    search_threads: int = Field(
        1,
        ge=1,
        description="OpenMP threads per FAISS search. Requests already run in parallel threads; more threads "
        "per single-query search oversubscribe the cores (OpenMP threads spin-wait) and make latency worse.",
    )

    @property
    def thumbnail_folder(self) -> Path:
        return self.thumbnails_dir or self.index / "thumbnails"
