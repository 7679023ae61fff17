"""Roles are ordered viewer < operator < admin: each allows what the ones below it allow."""

import pytest

from services.snapshots.tokens import Role


@pytest.mark.parametrize("role, allowed", [
    (Role.VIEWER, {Role.VIEWER}),
    (Role.OPERATOR, {Role.VIEWER, Role.OPERATOR}),
    (Role.ADMIN, {Role.VIEWER, Role.OPERATOR, Role.ADMIN}),
])
def test_a_role_allows_itself_and_the_roles_below_it_only(role, allowed):
    assert {required for required in Role if role.allows(required)} == allowed


def test_a_role_is_written_and_read_as_its_lower_case_name():
    assert [str(role) for role in Role] == ["viewer", "operator", "admin"]
    assert Role("operator").allows("viewer") and not Role("viewer").allows("admin")


def test_an_unknown_required_role_is_an_error_not_a_permission():
    with pytest.raises(ValueError):
        Role.ADMIN.allows("root")
