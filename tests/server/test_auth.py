"""Every endpoint in the OpenAPI document except /healthz answers 401 without a key (or
with an unknown, malformed or revoked one) and 403 with too small a scope; revocation
takes effect at once."""

from __future__ import annotations

import re
from typing import Any

import httpx

from runyard import keys
from runyard.store import open_store
from runyard.store.dbexec import DbExecutor
from tests.server.conftest import Keys, ServerProcess, client

WRITE_METHODS = {"post", "patch", "put", "delete"}


def _operations(api: httpx.Client) -> list[tuple[str, str]]:
    """Every operation but health, each also checked to document both ways of sending a
    key (and health, to document none)."""
    doc: dict[str, Any] = httpx.get(str(api.base_url) + "/openapi.json").json()
    schemes = doc["components"]["securitySchemes"]
    assert schemes["APIKeyHeader"] == {
        "type": "apiKey",
        "in": "header",
        "name": "x-api-key",
        "description": "An API key (`ry_...`)",
    }
    assert schemes["HTTPBearer"]["scheme"] == "bearer"
    ops = []
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            if path == "/healthz":
                assert "security" not in op
            else:
                assert op["security"] == [{"APIKeyHeader": []}, {"HTTPBearer": []}], path
                # Any value serves for the path parameters: auth is checked first.
                ops.append((method, re.sub(r"\{[^}]+\}", "x1", path)))
    return ops


def test_every_endpoint_needs_a_key_of_enough_scope(
    db_url: str, server: ServerProcess, api_keys: Keys
) -> None:
    with (
        client(server, None) as anonymous,
        client(server, api_keys.none) as scopeless,
        client(server, api_keys.read) as reader,
    ):
        ops = _operations(anonymous)
        assert len(ops) >= 25
        assert ("get", "/metrics") in ops and ("post", "/v1/runs") in ops
        for method, path in ops:
            # Without a key, or a key that is not one: 401, in the error shape, and
            # before the body is looked at (none is sent).
            for headers in (
                {},
                {"x-api-key": "ry_nope"},
                {"x-api-key": keys.generate()},  # well formed, unknown
                {"authorization": "Bearer " + keys.generate()},
                {"authorization": "Basic dXNlcjpwYXNz"},
            ):
                r = anonymous.request(method, path, headers=headers)
                assert r.status_code == 401, (method, path, headers, r.text)
                assert r.json()["error"]["code"] == "unauthorized"
                assert r.headers["www-authenticate"] == "Bearer"
            # A key without the scope the method needs: 403.
            weak = reader if method in WRITE_METHODS else scopeless
            r = weak.request(method, path)
            assert r.status_code == 403, (method, path, r.text)
            assert r.json()["error"]["code"] == "forbidden"
        # Health needs no key.
        assert anonymous.get("/healthz").status_code == 200


def test_bearer_scopes_and_immediate_revocation(
    db_url: str, server: ServerProcess, api_keys: Keys
) -> None:
    bearer = {"authorization": f"Bearer {api_keys.read}"}
    with httpx.Client(base_url=server.url, timeout=30) as api:
        assert api.get("/v1/runs", headers=bearer).status_code == 200
        assert api.get("/metrics", headers=bearer).status_code == 200
        assert api.post("/v1/events/e1", headers=bearer, json={}).status_code == 403
        write = {"x-api-key": api_keys.write}
        assert api.post("/v1/events/e1", headers=write, json={}).status_code == 200
        assert api.post("/v1/runs/cancel", headers=write, json={"all": True}).status_code == 403
        admin = {"x-api-key": api_keys.admin}
        assert api.post("/v1/runs/cancel", headers=admin, json={"all": True}).status_code == 200

        ex = DbExecutor(open_store(db_url))
        try:
            ex.write_sync(ex.store.revoke_api_key_txn, api_keys.ids["read"])
        finally:
            ex.close()
        r = api.get("/v1/runs", headers=bearer)
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
        assert api.get("/v1/runs", headers={"x-api-key": api_keys.write}).status_code == 200


def test_the_dev_key_from_the_environment_is_admin(
    db_url: str, server_factory: Any, api_keys: Keys
) -> None:
    server = server_factory(RUNYARD_API_KEY="dev-secret-key")
    with client(server, "dev-secret-key") as dev:
        assert dev.get("/v1/workflows").status_code == 200
        assert dev.post("/v1/runs/cancel", json={"all": True}).status_code == 200
    with client(server, "dev-secret-kez") as wrong:
        assert wrong.get("/v1/workflows").status_code == 401


def test_an_issued_key_as_the_server_key_keeps_its_scopes_and_revocation(
    db_url: str, server_factory: Any, api_keys: Keys
) -> None:
    # RUNYARD_API_KEY set to a key from `runyard keys create` is that key, not an admin
    # key: its stored scopes apply, and so does its revocation.
    server = server_factory(RUNYARD_API_KEY=api_keys.read)
    with client(server, api_keys.read) as reader:
        assert reader.get("/v1/workflows").status_code == 200
        r = reader.post("/v1/runs/cancel", json={"all": True})
        assert r.status_code == 403 and r.json()["error"]["details"]["granted"] == ["read"]
        assert reader.post("/v1/events/e1", json={}).status_code == 403
        ex = DbExecutor(open_store(db_url))
        try:
            ex.write_sync(ex.store.revoke_api_key_txn, api_keys.ids["read"])
        finally:
            ex.close()
        assert reader.get("/v1/workflows").status_code == 401
    server.stop()

    # Revoked before the server starts: refused from the first request.
    server = server_factory(RUNYARD_API_KEY=api_keys.read)
    with client(server, api_keys.read) as revoked:
        assert revoked.get("/v1/workflows").status_code == 401
    server.stop()

    # A well-formed key the store does not know is the server's own admin key.
    own = keys.generate()
    server = server_factory(RUNYARD_API_KEY=own)
    with client(server, own) as admin:
        assert admin.post("/v1/runs/cancel", json={"all": True}).status_code == 200
        assert admin.get("/v1/workflows").status_code == 200
