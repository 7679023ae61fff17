"""Bearer tokens at the HTTP edge: a small FastAPI app guarded by `auth.require`, served by
FastAPI's TestClient, with a real token store in a SQLite file."""

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import create_engine

from services.snapshots import auth
from services.snapshots.tokens import Role, TokenInfo, TokenStore


@pytest.fixture
def store(tmp_path) -> TokenStore:
    engine = create_engine(f"sqlite:///{tmp_path / 'views.sqlite'}")
    yield TokenStore(engine)
    engine.dispose()


def guarded_app(store: TokenStore | None) -> FastAPI:
    api = FastAPI()
    if store is not None:
        auth.install(api, store)

    @api.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    for role in Role:
        @api.get(f"/{role}")
        def endpoint(actor: TokenInfo = Depends(auth.require(role))) -> dict:
            return {"actor": actor.name, "role": actor.role}
    return api


@pytest.fixture
def client(store) -> TestClient:
    return TestClient(guarded_app(store))


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def test_health_needs_no_token(client):
    assert client.get("/health").json() == {"status": "ok"}


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Basic YWxpY2U6cHc="},
                                     {"Authorization": "Bearer"}, {"Authorization": "dws_x"}])
def test_a_request_without_a_bearer_token_is_unauthenticated(client, headers):
    answer = client.get("/viewer", headers=headers)
    assert (answer.status_code, answer.json()["code"]) == (401, "unauthenticated")
    assert answer.headers["WWW-Authenticate"] == "Bearer"
    assert "Bearer" in answer.json()["reason"]


def test_an_unknown_token_is_unauthenticated_and_not_repeated(client):
    answer = client.get("/viewer", headers=bearer("dws_not-a-real-token-at-all"))
    assert (answer.status_code, answer.json()) == (401, {
        "code": "unauthenticated", "reason": "the bearer token is unknown or revoked"})


def test_a_token_revoked_while_the_api_runs_is_refused_on_its_next_request(client, store):
    token = store.create("ci-deploy", Role.ADMIN)
    assert client.get("/admin", headers=bearer(token)).status_code == 200
    store.revoke("ci-deploy")
    answer = client.get("/admin", headers=bearer(token))
    assert (answer.status_code, answer.json()["code"]) == (401, "unauthenticated")


def test_a_role_below_the_one_required_is_forbidden_with_both_roles_named(client, store):
    token = store.create("dashboard", Role.VIEWER)
    answer = client.get("/operator", headers=bearer(token))
    assert (answer.status_code, answer.json()) == (403, {
        "code": "forbidden",
        "reason": "token 'dashboard' has the role viewer; this needs operator or above"})


@pytest.mark.parametrize("role, reachable", [
    (Role.VIEWER, ["viewer"]), (Role.OPERATOR, ["viewer", "operator"]),
    (Role.ADMIN, ["viewer", "operator", "admin"]),
])
def test_each_role_reaches_its_own_endpoints_and_those_below(client, store, role, reachable):
    token = store.create("someone", role)
    statuses = {str(r): client.get(f"/{r}", headers=bearer(token)).status_code for r in Role}
    assert statuses == {str(r): 200 if str(r) in reachable else 403 for r in Role}


def test_the_endpoint_sees_who_called_it(client, store):
    token = store.create("ci-deploy", Role.OPERATOR)
    answer = client.get("/operator", headers={"Authorization": f"bearer {token}"})
    assert answer.json() == {"actor": "ci-deploy", "role": "operator"}


def test_an_app_that_forgot_to_install_the_store_refuses_rather_than_admitting(store):
    token = store.create("ci-deploy", Role.ADMIN)
    client = TestClient(guarded_app(None), raise_server_exceptions=False)
    assert client.get("/viewer").status_code == 401
    assert client.get("/viewer", headers=bearer(token)).status_code == 500
