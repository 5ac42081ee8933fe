"""Typed server settings, read from arguments and `IMAGERANK_*` environment variables.

There is no module-level settings object: `create_app` builds one and routes receive it through
`deps.SettingsDep`, so tests and several apps in one process never share hidden state.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import Field, SecretStr
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

    allow_uploads: bool = Field(False, description="Accept POST /api/images (adding images to the index).")
    api_key: SecretStr | None = Field(
        None, description="Bearer key that writes (and, with protect_reads, reads) must send."
    )
    protect_reads: bool = Field(False, description="Require the API key for searching and images too.")
    uploads_dir: Path | None = Field(
        None, description="Where uploads are saved; default: the index's own (<index>/uploads)."
    )
    cors_origins: list[str] = Field(
        default_factory=list, description="Origins allowed to call the API from a browser (none: no CORS)."
    )

    @property
    def thumbnail_folder(self) -> Path:
        return self.thumbnails_dir or self.index / "thumbnails"

    @property
    def key(self) -> str | None:
        """The API key, or None when none is set (an empty variable counts as none)."""
        return self.api_key.get_secret_value() or None if self.api_key else None


def exposure_problem(host: str, settings: ServerSettings) -> str | None:
    """Why serving on `host` with these settings would be unsafe, or None when it is not.

    Writes without a key are allowed on a loopback address only (where just this machine's users reach
    them); read protection without a key would protect nothing.
    """
    if settings.protect_reads and not settings.key:
        return "--protect-reads needs a key: set IMAGERANK_API_KEY"
    if settings.allow_uploads and not settings.key and not is_loopback(host):
        return (
            f"refusing to serve uploads on {host} without a key: anyone who can reach the port could add "
            f"images. Set IMAGERANK_API_KEY, or listen on 127.0.0.1"
        )
    return None


def is_loopback(host: str) -> bool:
    """Whether `host` is this machine only: localhost or a loopback address (0.0.0.0 and :: are all)."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # another host name: it may resolve to any interface
