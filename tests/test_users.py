"""App users: scrypt-hashed passwords in a private file, roles, the CLI, and when the app demands sign-in."""

from __future__ import annotations

import json
import os
import stat

import pytest
from click.testing import CliRunner

from likeness.errors import RegistryError, UsageError
from likeness.users import NotAllowed, UserStore, can, require
from likeness.webapp.cli import users as users_group
from likeness.webapp.login_throttle import BASE_SECONDS, FAILURES, Throttle
from likeness.webapp.server import LoginGuard, is_loopback, needs_auth


@pytest.fixture()
def store(home) -> UserStore:
    return UserStore.for_home(home)


def test_added_user_authenticates_only_with_their_password(store: UserStore) -> None:
    store.add("ada", "a long passphrase", "admin")
    user = store.authenticate("ada", "a long passphrase")
    assert user is not None and user.name == "ada" and user.role == "admin"
    assert store.authenticate("ada", "a long passphrasE") is None
    assert store.authenticate("nobody", "a long passphrase") is None


def test_password_is_stored_hashed_in_a_private_file(store: UserStore) -> None:
    store.add("otto", "another passphrase", "operator")
    text = store.path.read_text()
    assert "another passphrase" not in text
    secret = json.loads(text)["users"]["otto"]["secret"]
    assert secret["scheme"] == "scrypt" and len(bytes.fromhex(secret["salt"])) == 16
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600


def test_two_users_with_one_password_get_different_hashes(store: UserStore) -> None:
    store.add("a1", "same passphrase!", "operator")
    store.add("a2", "same passphrase!", "operator")
    users = json.loads(store.path.read_text())["users"]
    assert users["a1"]["secret"]["hash"] != users["a2"]["secret"]["hash"]


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
def test_a_user_file_readable_by_others_is_refused(store: UserStore) -> None:
    store.add("ada", "a long passphrase", "admin")
    store.path.chmod(0o644)
    with pytest.raises(RegistryError, match="chmod 600"):
        store.authenticate("ada", "a long passphrase")


def test_bad_names_roles_passwords_and_duplicates_are_refused(store: UserStore) -> None:
    with pytest.raises(UsageError, match="not a valid user name"):
        store.add("ada lovelace", "a long passphrase", "admin")
    with pytest.raises(UsageError, match="unknown role"):
        store.add("ada", "a long passphrase", "root")
    with pytest.raises(UsageError, match="shorter than"):
        store.add("ada", "short", "admin")
    store.add("ada", "a long passphrase", "admin")
    with pytest.raises(UsageError, match="already exists"):
        store.add("ada", "a long passphrase", "operator")
    assert [u.name for u in store.list()] == ["ada"]


def test_role_change_password_change_and_removal_apply_at_once(store: UserStore) -> None:
    store.add("ada", "a long passphrase", "admin")
    store.set_role("ada", "operator")
    assert store.get("ada").role == "operator"
    store.set_password("ada", "a new passphrase")
    assert store.authenticate("ada", "a long passphrase") is None
    assert store.authenticate("ada", "a new passphrase") is not None
    store.remove("ada")
    assert store.get("ada") is None and not store.has_users()
    with pytest.raises(UsageError, match="no app user"):
        store.remove("ada")


def test_role_table() -> None:
    for action in ("enrol", "grant", "revoke", "erase"):
        assert can("admin", action) and not can("operator", action)
    for action in ("swap", "verify", "view", "audit"):
        assert can("admin", action) and can("operator", action)
    assert not can("admin", "no-such-action")


def test_require_names_the_user_the_role_and_the_action(store: UserStore) -> None:
    operator = store.add("otto", "another passphrase", "operator")
    with pytest.raises(NotAllowed, match="'otto' is signed in as operator; only admin may record consents"):
        require(operator, "grant")
    assert require(operator, "swap") is operator
    with pytest.raises(NotAllowed, match="sign in"):
        require(None, "swap")


def test_cli_adds_lists_and_removes_users(home) -> None:
    runner = CliRunner()
    added = runner.invoke(
        users_group,
        ["add", "ada", "--role", "admin", "--password-stdin", "--home", str(home.root)],
        input="a long passphrase\n",
    )
    assert added.exit_code == 0, added.output
    listed = runner.invoke(users_group, ["list", "--json", "--home", str(home.root)])
    assert json.loads(listed.output) == [
        {k: v for k, v in UserStore.for_home(home).get("ada").to_dict().items()}
    ]
    weak = runner.invoke(
        users_group,
        ["add", "bob", "--role", "operator", "--password-stdin", "--home", str(home.root)],
        input="x\n",
    )
    assert weak.exit_code == 2 and "shorter than" in weak.output
    removed = runner.invoke(users_group, ["remove", "ada", "--home", str(home.root)])
    assert removed.exit_code == 0 and not UserStore.for_home(home).has_users()


def test_app_refuses_a_public_address_without_users(store: UserStore) -> None:
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.10")
    assert needs_auth("127.0.0.1", store) is False
    with pytest.raises(UsageError, match=r"refusing to listen on 0\.0\.0\.0 without app users"):
        needs_auth("0.0.0.0", store)
    store.add("ada", "a long passphrase", "admin")
    assert needs_auth("0.0.0.0", store) is True
    assert needs_auth("127.0.0.1", store) is True  # users exist: sign-in everywhere


def test_login_guard_checks_the_password_only(store: UserStore) -> None:
    store.add("ada", "a long passphrase", "admin")
    guard = LoginGuard(store)
    assert guard(" ada ", "a long passphrase") and not guard("ada", "wrong guess 123")


def test_sign_in_backs_off_per_client_and_says_it_is_locked() -> None:
    now = [1000.0]
    throttle = Throttle(clock=lambda: now[0])
    for _ in range(FAILURES):
        throttle.failed("10.0.0.9", "ada")
    wait = throttle.wait_seconds("10.0.0.9", "ada")
    assert wait == pytest.approx(BASE_SECONDS)
    assert "locked" in throttle.message("ada", wait) and "Other browsers" in throttle.message("ada", wait)
    assert throttle.wait_seconds("127.0.0.1", "ada") == 0.0  # the user's own browser is not locked out
    now[0] += BASE_SECONDS + 1
    assert throttle.wait_seconds("10.0.0.9", "ada") == 0.0  # a stranger cannot lock it forever
    throttle.failed("10.0.0.9", "ada")
    assert throttle.wait_seconds("10.0.0.9", "ada") == pytest.approx(2 * BASE_SECONDS)  # backing off
    throttle.succeeded("10.0.0.9", "ada")
    assert throttle.wait_seconds("10.0.0.9", "ada") == 0.0
