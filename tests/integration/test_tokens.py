"""API tokens on every database the views live in: the same scenarios on a real SQLite
file and on the local PostgreSQL server."""

import threading
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from services.snapshots import views
from services.snapshots.tokens import PREFIX, Role, TokenError, TokenStore
from tests.conftest import postgres_dsn


class TokenScenarios:
    @pytest.fixture
    def engine(self) -> Engine:
        raise NotImplementedError

    @pytest.fixture
    def store(self, engine) -> TokenStore:
        return TokenStore(engine)

    def stored_text(self, engine) -> str:
        """Everything the database holds of the token table, as text."""
        raise NotImplementedError

    def test_a_created_token_authenticates_as_its_name_and_role(self, store):
        token = store.create("ci-deploy", Role.OPERATOR)
        info = store.authenticate(token)
        assert (info.name, info.role, info.revoked_at) == ("ci-deploy", Role.OPERATOR, None)
        assert token.startswith(PREFIX) and len(token) > 40

    def test_each_token_is_different_and_authenticates_only_itself(self, store):
        tokens = {name: store.create(name, "viewer") for name in ("alice", "bob", "carol")}
        assert len(set(tokens.values())) == 3
        assert {name: store.authenticate(token).name for name, token in tokens.items()} == {
            "alice": "alice", "bob": "bob", "carol": "carol"}

    @pytest.mark.parametrize("guess", ["", "dws_", "dws_" + "A" * 43, "Bearer x", "dws_\x00",
                                       "dws_" + "x" * 10_000, "dws_\ud800"])
    def test_an_unknown_token_does_not_authenticate(self, store, guess):
        store.create("alice", Role.ADMIN)
        assert store.authenticate(guess) is None

    def test_a_revoked_token_no_longer_authenticates(self, store):
        token = store.create("ci-deploy", Role.ADMIN)
        assert store.revoke("CI-Deploy") is True
        assert store.authenticate(token) is None
        assert store.revoke("ci-deploy") is False

    def test_revoking_an_unknown_name_says_so(self, store):
        assert store.revoke("nobody") is False

    def test_the_list_shows_names_roles_and_revocations_but_no_secret(self, store):
        store.create("alice", Role.ADMIN)
        store.create("bob", Role.VIEWER)
        store.revoke("alice")
        listed = store.list()
        assert [(t.name, t.role, t.revoked_at is not None) for t in listed] == [
            ("alice", Role.ADMIN, True), ("bob", Role.VIEWER, False)]
        assert all(t.created_at.tzinfo is not None for t in listed)
        assert set(vars(listed[0])) == {"name", "role", "created_at", "revoked_at"}

    def test_a_live_name_cannot_be_taken_twice_in_any_case(self, store):
        store.create("alice", Role.VIEWER)
        with pytest.raises(TokenError, match="already exists"):
            store.create("ALICE", Role.ADMIN)
        assert [t.role for t in store.list()] == [Role.VIEWER]

    def test_a_revoked_name_can_be_used_again_and_only_the_new_token_works(self, store):
        old = store.create("alice", Role.VIEWER)
        store.revoke("alice")
        new = store.create("alice", Role.OPERATOR)
        assert (store.authenticate(old), store.authenticate(new).role) == (None, Role.OPERATOR)

    def test_of_simultaneous_creates_of_one_name_exactly_one_succeeds(self, store):
        outcomes, start = [], threading.Barrier(8)

        def create():
            start.wait()
            try:
                outcomes.append(store.create("racer", Role.VIEWER))
            except TokenError:
                outcomes.append(None)
        threads = [threading.Thread(target=create) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sum(o is not None for o in outcomes) == 1 and len(store.list()) == 1

    @pytest.mark.parametrize("name", ["", "a" * 65, "a b", "a/b", "alice\n", "ålice", "'; --"])
    def test_a_bad_name_is_refused_with_the_rule(self, store, name):
        with pytest.raises(TokenError, match="1 to 64 letters, digits"):
            store.create(name, Role.VIEWER)
        assert store.list() == []

    def test_an_unknown_role_is_refused_naming_the_roles(self, store):
        with pytest.raises(TokenError, match="viewer, operator, admin"):
            store.create("alice", "root")

    def test_the_stored_table_holds_no_plain_token(self, store, engine):
        tokens = [store.create(name, Role.ADMIN) for name in ("alice", "bob")]
        stored = self.stored_text(engine)
        assert "alice" in stored and "bob" in stored  # the rows are there, their tokens are not
        assert not any(token[len(PREFIX):] in stored for token in tokens)

    def test_recreating_the_view_tables_keeps_the_tokens(self, store, engine):
        token = store.create("alice", Role.ADMIN)
        views.metadata.drop_all(engine)
        views.metadata.create_all(engine)
        assert store.authenticate(token).name == "alice"
        assert TokenStore(engine).authenticate(token).name == "alice"

    def test_tokens_survive_a_new_store_on_the_same_database(self, store, engine):
        token = store.create("alice", Role.OPERATOR)
        assert TokenStore(engine).authenticate(token).role == Role.OPERATOR


class TestOnSQLite(TokenScenarios):
    @pytest.fixture
    def engine(self, tmp_path):
        engine = views.connect(f"sqlite:///{tmp_path / 'views.sqlite'}")
        yield engine
        engine.dispose()

    def stored_text(self, engine) -> str:
        with engine.connect() as connection:
            rows = [repr(tuple(row)) for row in connection.execute(text("SELECT * FROM api_tokens"))]
        # The file itself, free pages included, must not hold a token either.
        return "\n".join(rows) + Path(engine.url.database).read_bytes().decode("latin-1")


class TestOnPostgreSQL(TokenScenarios):
    @pytest.fixture
    def engine(self, postgres_database):
        dsn = postgres_dsn(postgres_database).replace("postgresql://", "postgresql+psycopg://")
        engine = views.connect(dsn)
        yield engine
        engine.dispose()

    def stored_text(self, engine) -> str:
        with engine.connect() as connection:
            return "\n".join(connection.execute(text("SELECT t::text FROM api_tokens t")).scalars())
