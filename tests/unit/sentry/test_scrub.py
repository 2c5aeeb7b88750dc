"""Scrubbing: the sentry-python and Relay denylists by word, values by pattern, no over-scrubbing."""

from __future__ import annotations

import pytest

from sidecar.sentry.scrub import DEFAULT_DENYLIST, FILTERED, Scrubber, luhn_valid, words

pytestmark = pytest.mark.timeout(30)

S = Scrubber()


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "Password",
        "user_password",
        "passwordConfirmation",
        "passwd",
        "secret",
        "client_secret",
        "api_key",
        "apiKey",
        "X-Api-Key",
        "x-api-key",
        "apikey",
        "auth",
        "X-Auth-Token",
        "X-Sentry-Auth",
        "credentials",
        "private_key",
        "privateKey",
        "mysql_pwd",
        "token",
        "access_token",
        "refreshToken",
        "session",
        "sessionid",
        "session_id",
        "Authorization",
        "Proxy-Authorization",
        "HTTP_AUTHORIZATION",
        "Cookie",
        "Set-Cookie",
        "cookies",
        "csrftoken",
        "XSRF-TOKEN",
        "connect.sid",
        "PHPSESSID",
        "otp",
        "two_factor",
    ],
)
def test_sensitive_keys(key: str) -> None:
    assert S.is_sensitive_key(key), key


@pytest.mark.parametrize(
    "key",
    [
        "author",
        "authenticated",
        "authority",
        "tokenizer",
        "oauth",
        "key",
        "monkey",
        "passwordless",
        "name",
        "id",
    ],
)
def test_ordinary_words_are_kept(key: str) -> None:
    assert not S.is_sensitive_key(key), key


def test_every_default_denylist_entry_matches_itself() -> None:
    for entry in DEFAULT_DENYLIST:
        assert S.is_sensitive_key(entry), entry


def test_words() -> None:
    assert words("X-Api-Key") == ["x", "api", "key"]
    assert words("accessToken") == ["access", "token"]
    assert words("HTTPServerError") == ["http", "server", "error"]


def test_nested_structures_dict_list_and_header_pairs() -> None:
    event = {
        "request": {
            "headers": [["Authorization", "Bearer abcdef123456"], ["Accept", "text/html"], ["Cookie", "a=b"]],
            "cookies": {"session": "s3cr3t"},
            "query_string": "page=2&token=abc123&q=author",
            "data": {"user": {"name": "ann", "password": "hunter2"}, "author": "bob"},
        },
        "extra": {"db": {"credentials": {"user": "u", "pw": "p"}}, "list": [{"api_key": "k"}, "plain"]},
        "tags": {"tokenizer": "bpe"},
    }
    out = S.scrub(event)
    assert out["request"]["headers"] == [
        ["Authorization", FILTERED],
        ["Accept", "text/html"],
        ["Cookie", FILTERED],
    ]
    assert out["request"]["cookies"] == FILTERED
    assert out["request"]["query_string"] == f"page=2&token={FILTERED}&q=author"
    assert out["request"]["data"] == {"user": {"name": "ann", "password": FILTERED}, "author": "bob"}
    assert out["extra"]["db"]["credentials"] == FILTERED
    assert out["extra"]["list"] == [{"api_key": FILTERED}, "plain"]
    assert out["tags"] == {"tokenizer": "bpe"}
    assert event["request"]["data"]["user"]["password"] == "hunter2", "the input is not modified"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("auth failed: Bearer eyJhbGciOi.J9abc", f"auth failed: Bearer {FILTERED}"),
        ("header Basic dXNlcjpwYXNzd29yZA==", f"header Basic {FILTERED}"),
        ("a basic configuration problem", "a basic configuration problem"),
        ("connect postgres://app:s3cret@db:5432/app", f"connect postgres://app:{FILTERED}@db:5432/app"),
        ("GET /login?user=ann&password=hunter2", f"GET /login?user=ann&password={FILTERED}"),
        ('body {"password": "hunter2", "user": "ann"}', f'body {{"password": "{FILTERED}", "user": "ann"}}'),
        ("paid with 4111 1111 1111 1111 today", f"paid with {FILTERED} today"),
        ("card 4111-1111-1111-1111", f"card {FILTERED}"),
        ("card 4111111111111111.", f"card {FILTERED}."),
        ("amex 378282246310005", f"amex {FILTERED}"),
        ("not luhn 4111 1111 1111 1112", "not luhn 4111 1111 1111 1112"),
        (
            "epoch ms 1700000000000 and ns 1700000000000000000",
            "epoch ms 1700000000000 and ns 1700000000000000000",
        ),
        ("order 12345678", "order 12345678"),
        ("id 9ec79c33ec9942ab8353589fcb2e04dc", "id 9ec79c33ec9942ab8353589fcb2e04dc"),
        (
            "key -----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY----- end",
            f"key {FILTERED} end",
        ),
        ("the author= field", "the author= field"),
    ],
)
def test_values_by_pattern(text: str, expected: str) -> None:
    assert S.scrub_text(text) == expected


def test_luhn() -> None:
    assert luhn_valid("4111111111111111")
    assert luhn_valid("378282246310005")
    assert not luhn_valid("4111111111111112")


def test_extra_and_allowed_keys() -> None:
    scrubber = Scrubber(extra_keys=["ssn", "account_number"], allow_keys=["session_id"])
    out = scrubber.scrub(
        {"ssn": "1", "accountNumber": "2", "session_id": "abc", "session": "s", "other": "x"}
    )
    assert out == {
        "ssn": FILTERED,
        "accountNumber": FILTERED,
        "session_id": "abc",
        "session": FILTERED,
        "other": "x",
    }
    # allow-listed keys still get value patterns applied: a bearer token is never safe
    assert scrubber.scrub({"session_id": "Bearer abcdefgh123"}) == {"session_id": f"Bearer {FILTERED}"}


def test_empty_values_stay_empty_and_depth_is_bounded() -> None:
    assert S.scrub({"password": None, "token": ""}) == {"password": None, "token": ""}
    deep: dict[str, object] = {}
    node = deep
    for _ in range(200):
        node["a"] = {}
        node = node["a"]  # type: ignore[assignment]
    S.scrub(deep)  # no RecursionError


def test_before_send_hook_scrubs_events() -> None:
    event = {"request": {"headers": {"Authorization": "Bearer abcdefgh", "User-Agent": "x"}}}
    assert S.before_send(event, {}) == {
        "request": {"headers": {"Authorization": FILTERED, "User-Agent": "x"}}
    }
