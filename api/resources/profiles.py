"""Minimal profile routes, so clients have something to attach to: create and get."""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from typing import Any

import falcon
from falcon.uri import parse_query_string

from api.auth import Authorizer
from api.bodyguard import guarded_body
from api.crafter import profile_json
from api.errors import ParamDeserializationError
from api.names import check_object_id
from api.ports import Records
from core.errors import BadRequest, InvalidEmail, NoSuchTenant
from core.settings import Settings

from .attachments import token_param

# Crafter validates addresses with a pattern of this strength; full RFC 5322 is not the point.
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1)
    return f"scrypt${salt.hex()}${digest.hex()}"


# The largest form a profile can take (names, address, roles, attributes): anything larger is
# refused from its Content-Length, before a byte is read or a token looked at.
MAX_FORM_SIZE = 64 * 1024


def _read_form(req: falcon.Request, settings: Settings) -> str:
    """The form body, read through the same guard as uploads (cap, idle timeout, deadline)."""
    chunks = []
    with guarded_body(req, settings, cap=MAX_FORM_SIZE, limit=MAX_FORM_SIZE) as guard:
        while chunk := guard.read(MAX_FORM_SIZE):
            chunks.append(chunk)
    try:
        return b"".join(chunks).decode()
    except UnicodeDecodeError:
        raise BadRequest("The form body is not UTF-8") from None


def _params(req: falcon.Request, settings: Settings) -> dict[str, list[str]]:
    """Request parameters from the query string or a form body alike, as a servlet sees them."""
    params: dict[str, list[str]] = {}
    for key, value in req.params.items():
        params.setdefault(key, []).extend(value if isinstance(value, list) else [value])
    if (req.content_type or "").startswith("application/x-www-form-urlencoded"):
        form = parse_query_string(_read_form(req, settings), keep_blank=True, csv=False)
        for key, value in form.items():
            params.setdefault(key, []).extend(value if isinstance(value, list) else [value])
    return params


def _one(params: dict[str, list[str]], name: str, required: bool = True) -> str | None:
    values = params.get(name) or []
    if not values or values[0] == "":
        if required:
            raise BadRequest(f"Required request parameter '{name}' is not present")
        return None
    return values[0]


def _bool(value: str) -> bool:
    if value.lower() in ("true", "1", "yes", "on"):
        return True
    if value.lower() in ("false", "0", "no", "off"):
        return False
    raise BadRequest(f"'{value}' is not a boolean")


class CreateProfileResource:
    def __init__(self, records: Records, authorizer: Authorizer, settings: Settings) -> None:
        self.records = records
        self.auth = authorizer
        self.settings = settings

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        params = _params(req, self.settings)
        token = self.auth.token(token_param(req) or _one(params, "accessTokenId", required=False))
        tenant = _one(params, "tenantName")
        assert tenant is not None
        # Crafter's order: the permission first, so a token learns nothing about tenants it
        # has no access to, not even whether they exist.
        self.auth.check_tenant(token, tenant)
        username = _one(params, "username")
        email = _one(params, "email")
        enabled = _bool(_one(params, "enabled") or "")
        assert username is not None and email is not None
        if not _EMAIL.match(email):
            raise InvalidEmail(f"Invalid email address '{email}'")
        if not self.records.tenant_exists(tenant):
            raise NoSuchTenant(tenant)
        password = _one(params, "password", required=False)
        roles = params.get("role", [])
        raw_attributes = _one(params, "attributes", required=False)
        attributes: dict[str, Any] = {}
        if raw_attributes:
            try:
                attributes = json.loads(raw_attributes)
            except ValueError:
                raise ParamDeserializationError("'attributes' is not valid JSON") from None
            if not isinstance(attributes, dict):
                raise ParamDeserializationError("'attributes' must be a JSON object")
        profile = self.records.create_profile(
            tenant,
            username,
            email,
            enabled=enabled,
            password_hash=hash_password(password) if password else None,
            roles=roles,
            attributes=attributes,
        )
        resp.media = profile_json(profile)


class ProfileResource:
    def __init__(self, authorizer: Authorizer) -> None:
        self.auth = authorizer

    def on_get(self, req: falcon.Request, resp: falcon.Response, profile_id: str) -> None:
        check_object_id(profile_id)
        resp.media = profile_json(self.auth.profile(token_param(req), profile_id))
