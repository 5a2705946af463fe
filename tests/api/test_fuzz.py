"""Schemathesis against /openapi.json, in-process: every operation, with a valid API key.

Bounded (a few examples per operation) so that the whole file runs in well under a
minute. Every response must be no 5xx and conform to the document: status code, content
type, headers and body schema; a request the schema marks invalid must be refused.

One check is left out: that every schema-valid request succeeds. Some rules are not JSON
Schema: an ``owner_id`` must name an existing user, ACL rules have a grammar, lengths
are in UTF-8 bytes, ids must exist, an update must change something, so requests valid
by the schema are rightly answered 400 or 404. (schemathesis' own pytest plugin, ``from_fixture``, does
not run under pytest 9, so each operation is a parametrized test drawing its own cases.)
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi import checks

from burrow.api.openapi import openapi_document
from burrow.domain import resources
from tests.harness import AppServer

OPERATIONS = [
    result.ok().label
    for result in schemathesis.openapi.from_dict(openapi_document(resources.ALL)).get_all_operations()
]
EXAMPLES = 20


def test_every_route_is_fuzzed() -> None:
    assert len(OPERATIONS) >= 26


@pytest.mark.parametrize("label", OPERATIONS)
def test_operation_answers_as_documented(label: str, app_server: AppServer) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app_server.app)
    operation = schema.find_operation_by_label(label)
    assert operation is not None
    headers = {"Authorization": f"Bearer {app_server.api_key}", "Ngrok-Version": "2"}

    @given(case=operation.as_strategy())
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    def check(case: schemathesis.Case) -> None:
        case.call_and_validate(headers=headers, excluded_checks=[checks.positive_data_acceptance])

    check()
