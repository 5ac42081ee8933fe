"""Fuzz the running server from its own OpenAPI schema with schemathesis: no input may cause a 5xx.

Valid (positive) and invalid (negative) requests are generated for every operation; each response must
not be a server error and must match the documented schema and content type. Bounded by a small number
of examples per operation, each with a deadline. (schemathesis's own pytest plugin does not run under
pytest 9, so the cases come from `APIOperation.as_strategy` with plain Hypothesis.)
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from server_fixtures import Served, sample_server

from imagerank import Embedder

schemathesis = pytest.importorskip("schemathesis")
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance  # noqa: E402

EXAMPLES_PER_OPERATION = 20
OPERATIONS = [
    ("GET", "/api/health", None),
    ("GET", "/api/stats", None),
    ("POST", "/api/search", "application/json"),
    ("POST", "/api/search", "multipart/form-data"),
    ("GET", "/api/images/{image_id}", None),
    ("GET", "/api/images/{image_id}/thumbnail", None),
    ("POST", "/api/images", "multipart/form-data"),
    ("GET", "/api/collection", None),
    ("GET", "/api/methods", None),
    ("POST", "/api/labels", "application/json"),
]
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, mobilenet: Embedder) -> Iterator[Served]:
    with sample_server(tmp_path_factory, "fuzz", mobilenet, ["--allow-uploads"]) as running:
        # The first search by words in a process loads the sentence model (seconds): done here, not inside a
        # fuzzed example's deadline.
        httpx.post(f"{running.url}/api/search", json={"text": "a dog"}, timeout=120).raise_for_status()
        yield running


@pytest.fixture(scope="module")
def api_schema(served: Served) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{served.url}/openapi.json", timeout=30)


def test_every_operation_is_fuzzed(api_schema: schemathesis.BaseSchema) -> None:
    documented = {
        (result.ok().method.upper(), result.ok().path) for result in api_schema.get_all_operations()
    }
    assert documented == {(method, path) for method, path, _ in OPERATIONS}


# Negative cases for every operation that takes input (the others have nothing to get wrong).
FUZZ_CASES = [(*operation, GenerationMode.POSITIVE) for operation in OPERATIONS] + [
    (*operation, GenerationMode.NEGATIVE) for operation in OPERATIONS if operation[2] or "{" in operation[1]
]


@pytest.mark.parametrize(("method", "path", "media_type", "mode"), FUZZ_CASES, ids=str)
def test_no_request_makes_a_server_error(
    api_schema: schemathesis.BaseSchema,
    served: Served,
    method: str,
    path: str,
    media_type: str | None,
    mode: GenerationMode,
) -> None:
    operation = api_schema[path][method]

    @given(case=operation.as_strategy(mode, media_type=media_type))
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=10_000,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def check(case: schemathesis.Case) -> None:
        case.call_and_validate(base_url=served.url, checks=CHECKS, timeout=30)

    check()
    assert served.process.poll() is None
