"""Property tests for redaction: no generated connection URL's password survives ``mask_url``, and no
secret a URL carries survives ``redact_text`` with that URL's ``url_secrets`` in any form a driver
might print it (as written, percent-decoded).

Passwords are drawn with a marker alphabet (upper case and symbols) that the other URL parts
(lower case and digits) never use, so "the password is not in the output" is a decisive check.
"""

from __future__ import annotations

from urllib.parse import quote, unquote

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from sidecar.core.redaction import MASK, mask_url, redact_text, url_secrets

pytestmark = pytest.mark.timeout(120)
FAST = settings(max_examples=400, deadline=None)

SCHEMES = ["postgres", "postgresql", "mysql", "mariadb", "redis", "rediss", "amqp", "amqps", "http", "https"]
LOWER = "abcdefghijklmnopqrstuvwxyz0123456789"
schemes = st.sampled_from(SCHEMES)
users = st.text(LOWER + "_-.", max_size=8)
hosts = st.from_regex(r"[a-z][a-z0-9-]{0,10}(\.[a-z][a-z0-9]{0,6}){0,2}", fullmatch=True)
ports = st.none() | st.integers(1, 65535)
paths = st.from_regex(r"(/[a-z0-9_]{0,8}){0,2}", fullmatch=True)
SECRET_KEYS = [
    "password",
    "PASSWORD",
    "passwd",
    "pwd",
    "token",
    "access_token",
    "api_key",
    "apikey",
    "secret",
]
SECRET_KEYS += ["sslpassword", "key", "sig", "signature", "auth", "client_secret", "refresh_token"]

# Passwords: a leading marker the rest of the URL cannot contain, then anything.
any_text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=16)
safe_raw = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ!$&'()*+,;=:~._-@", min_size=1, max_size=16)
ambiguous_raw = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ/?#!:", min_size=1, max_size=16)


def marked(text: str) -> str:
    return "Q" + text + "Z"


def url(
    scheme: str, user: str, password: str, host: str, port: int | None, path: str, query: str = ""
) -> str:
    netloc = f"{user}:{password}@{host}" + (f":{port}" if port else "")
    return f"{scheme}://{netloc}{path}" + (f"?{query}" if query else "")


@FAST
@given(schemes, users, any_text.map(marked), hosts, ports, paths)
def test_percent_encoded_passwords_never_survive(
    scheme: str, user: str, password: str, host: str, port: int | None, path: str
) -> None:
    encoded = quote(password, safe="")
    out = mask_url(url(scheme, user, encoded, host, port, path))
    assert encoded not in out and password not in out, out
    assert f"{user}:{MASK}@{host}" in out


@FAST
@given(schemes, users, safe_raw.map(marked), hosts, ports, paths)
@example("postgres", "app", "QP@ss:w@rdZ", "db", 5432, "/app")
def test_raw_passwords_with_reserved_characters_never_survive(
    scheme: str, user: str, password: str, host: str, port: int | None, path: str
) -> None:
    out = mask_url(url(scheme, user, password, host, port, path))
    assert password not in out, out


@FAST
@given(schemes, users, ambiguous_raw.map(marked), hosts, ports, paths)
@example("redis", "", "Qpa/ssZ", "cache", 6379, "/0")
@example("postgres", "app", "Qp?wZ", "db", None, "/x")
@example("mysql", "root", "Qp#wZ", "db", None, "")
def test_unencoded_slash_question_hash_in_a_password_never_survive(
    scheme: str, user: str, password: str, host: str, port: int | None, path: str
) -> None:
    """RFC 3986 wants these percent-encoded, but people paste such URLs; the password must not show."""
    out = mask_url(url(scheme, user, password, host, port, path))
    assert password not in out, out


@FAST
@given(schemes, hosts, paths, st.sampled_from(SECRET_KEYS), any_text.map(marked), st.booleans())
def test_secret_query_values_never_survive(
    scheme: str, host: str, path: str, key: str, value: str, first: bool
) -> None:
    encoded = quote(value, safe="")
    pairs = [f"{key}={encoded}", "sslmode=require"]
    query = "&".join(pairs if first else reversed(pairs))
    out = mask_url(f"{scheme}://{host}{path}?{query}")
    assert encoded not in out and value not in out, out
    assert "sslmode=require" in out


@FAST
@given(schemes, users, any_text.map(marked), hosts, ports, paths)
@example("postgres", "app", "Qp@ss wordZ", "db", None, "/x")
def test_url_secrets_redact_the_password_as_drivers_print_it(
    scheme: str, user: str, password: str, host: str, port: int | None, path: str
) -> None:
    """Drivers quote the decoded password (``password 'p@ss' rejected``), not the URL's encoding."""
    target = url(scheme, user, quote(password, safe=""), host, port, path)
    secrets = url_secrets(target)
    for printed in (password, quote(password, safe=""), target):
        out = redact_text(f"connect failed for {printed!s}: wrong password", secrets)
        assert password not in out and quote(password, safe="") not in out, out


@FAST
@given(st.text(max_size=60))
def test_mask_url_never_raises_and_is_idempotent(text: str) -> None:
    once = mask_url(text)
    assert mask_url(once) == once


@FAST
@given(schemes, hosts, ports, paths)
def test_urls_without_credentials_are_unchanged(scheme: str, host: str, port: int | None, path: str) -> None:
    plain = f"{scheme}://{host}" + (f":{port}" if port else "") + path + "?sslmode=require&db=1"
    assert mask_url(plain) == plain
    assert unquote(plain) == plain


@pytest.mark.parametrize(
    "plain",
    [
        "http://hooks.internal:8080/notify?to=ops@example.com",
        "https://api.internal:443/users/@me",
        "http://127.0.0.1:9000/a/b?email=x@y.z&page=2",
    ],
)
def test_a_port_followed_by_an_at_sign_is_not_taken_for_a_password(plain: str) -> None:
    assert mask_url(plain) == plain
