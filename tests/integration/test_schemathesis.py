"""Schemathesis against the served OpenAPI document: for every operation, generated requests, valid
and invalid, each answered without a 5xx, with a status the document lists and a body its schema
accepts. A bounded number of examples per operation keeps the run to seconds.

Generated requests carry a valid token (the document's security scheme is a query parameter),
and, drawn half of the time, the id of a real profile, the name of a real attachment, a real image
as the upload, or the token's own tenant and a valid address for a new profile: so they also get
past "no such profile", uploads are accepted and go through the pipeline, and the last test proves
they left nothing behind.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import strategies as st

from api.openapi import document
from storage.objects import ObjectStore
from tests.conftest import png_bytes
from tests.integration import reliability_report
from tests.integration.api_support import (
    SVG,
    Account,
    jpeg_bytes,
    new_account,
    settled_leftovers,
    upload_attached,
)
from tests.integration.conftest import Stack

EXAMPLES = 30  # per operation
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
)
IMAGES = [("png", png_bytes(12, 9)), ("jpg", jpeg_bytes()), ("svg", SVG)]

# Loaded at import: Schemathesis makes one test per operation when pytest collects them. The
# served document is checked to be this one before any request is generated. (The loader that
# would wait for a fixture, schemathesis.pytest.from_fixture, fails on pytest 9.)
SCHEMA = schemathesis.openapi.from_dict(
    document(),
    config=schemathesis.Config.from_dict(
        {
            "checks": {"enabled": False, **{name: {"enabled": True} for name in CHECKS}},
            "generation": {"max-examples": EXAMPLES, "database": "none"},
        }
    ),
)

# A tus PATCH's body is raw bytes under tus's own media type (api/openapi_tus.py).
schemathesis.serializer.alias("application/offset+octet-stream", "application/octet-stream")

# Per operation: the statuses answered, in the order the tests run.
SEEN: dict[str, Counter[int]] = {}


@pytest.fixture(scope="module")
def account(stack: Stack) -> Account:
    """A profile with an attached file, for the generated requests that use real ids."""
    account = new_account(stack.records)
    upload_attached(stack, account, "doc.png", png_bytes())
    served = requests.get(
        stack.url("/api/1/openapi.json"), params={"accessTokenId": account.token}, timeout=30
    )
    assert served.json() == document(stack.settings.url_prefix), "not the document under test"
    return account


def steer(case: Any, data: st.DataObject, account: Account) -> None:
    """Sometimes replace what was generated with what exists, so a request gets past 'no such
    profile' and an upload into the pipeline; what is left is Schemathesis' own."""
    params = case.path_parameters or {}
    if "profileId" in params and data.draw(st.booleans(), "real profile"):
        params["profileId"] = account.profile_id
        # A DELETE keeps its generated name: the file the others read must stay.
        if "name" in params and case.method != "DELETE" and data.draw(st.booleans(), "real name"):
            params["name"] = "doc"
    body = case.body
    if not isinstance(body, dict) or not data.draw(st.booleans(), "real content"):
        return
    if "uploadAttachment" in case.path:
        ext, content = data.draw(st.sampled_from(IMAGES), "image")
        stem = body.get("filename")
        body["filename"] = f"{stem if isinstance(stem, str) else 'fuzz'}.{ext}"
        body["attachment"] = content
    elif case.path.endswith("/create"):
        body.update(tenantName=account.tenant, email="fuzz@example.com")


@SCHEMA.parametrize()
@SCHEMA.given(data=st.data())
def test_every_operation(case: Any, data: st.DataObject, stack: Stack, account: Account) -> None:
    steer(case, data, account)
    response = case.call_and_validate(
        base_url=stack.base_url, params={"accessTokenId": account.token}, timeout=30
    )
    SEEN.setdefault(case.operation.label, Counter())[response.status_code] += 1


def test_generated_requests_left_nothing_behind(stack: Stack, objects: ObjectStore) -> None:
    for operation, statuses in SEEN.items():
        reliability_report.record(
            "schemathesis",
            {
                "operation": operation,
                "examples": sum(statuses.values()),
                "statuses": sorted(statuses),
            },
        )
    found = settled_leftovers(stack, objects)
    reliability_report.record("schemathesis-run", {"checks": CHECKS, "leftovers": found})
    assert not any(found.values()), (found, stack.records.count_by_state())
