"""Schemathesis against the catalog's own OpenAPI spec, over real HTTP: no request may produce a 5xx.

The operations' hypothesis strategies are driven directly: schemathesis' pytest plugin does not run under
pytest 9.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from cortex.coord.server import EmbeddedRedis

from .test_catalog_api import make_catalog

EXAMPLES_PER_OPERATION = 25


@pytest.mark.timeout(300)
def test_no_request_produces_a_server_error(redis_server: EmbeddedRedis) -> None:
    server, cat = make_catalog(redis_server)
    try:
        schema = schemathesis.openapi.from_url(f"{cat.url}/openapi.json")
        # /events streams forever and /graphql is tested with its own queries
        schema = schema.exclude(path="/events").exclude(path_regex="^/graphql")
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 10  # every REST route is exercised
        for operation in operations:

            @given(case=operation.as_strategy())
            @settings(
                max_examples=EXAMPLES_PER_OPERATION,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                database=None,
            )
            def call(case: schemathesis.Case) -> None:
                case.call_and_validate(headers=cat.writer, checks=[not_a_server_error])

            call()
    finally:
        server.stop()
