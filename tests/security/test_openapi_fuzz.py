"""schemathesis against the running API's own /openapi.json: no 5xx, no response outside
the published schema (issue 7), with an operator key and real data behind the paths."""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.factories.api import ApiHarness

EXAMPLES_PER_OPERATION = 12
REAL_PATH_VALUES = {"cn": "C0001", "address": "taro@e06.example.net"}
#: What "no 5xx and no schema violations" means.  Not positive_data_acceptance: the API
#: refuses schema-valid but rule-breaking input (a 2-character local part, a customer key
#: without a contract) with 422, which the manual's rules require.
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, response_headers_conformance]


def test_api_answers_every_generated_request_within_its_published_schema(
    api: ApiHarness,
) -> None:
    api.create_contract("C0001")
    api.create_address("C0001", "taro", "e06")
    schema = schemathesis.openapi.from_url(f"{api.base_url}/openapi.json")
    headers = {"Authorization": f"Bearer {api.operator_key}"}
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True,
                  suppress_health_check=list(HealthCheck), database=None)
        def check(case: Any) -> None:
            # Real contract and address in the path, so requests reach the handlers
            # instead of stopping at a 404 for a random customer number.
            for name, value in REAL_PATH_VALUES.items():
                if case.path_parameters and name in case.path_parameters:
                    case.path_parameters[name] = value
            case.call_and_validate(headers=headers, checks=CHECKS)

        try:
            check()
        except Exception as exc:  # collect every operation's failure, then report all
            failures.append(f"{operation.label}: {str(exc)[:600]}")
    assert operations >= 25
    assert not failures, "\n\n".join(failures)
