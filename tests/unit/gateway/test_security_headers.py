"""Security headers without the network: Helmet's default set, never a duplicate, removals, a CSP,
per-route changes, and settings that would break a response refused."""

from __future__ import annotations

import pytest

from sidecar.core.settings_model import ValidationError
from sidecar.gateway.security_headers import HELMET_DEFAULTS, SecurityHeaders, SecurityHeaderSettings


def lines(block: bytes) -> dict[str, str]:
    found = {}
    for line in block.decode().split("\r\n"):
        if line:
            name, _, value = line.partition(": ")
            assert name not in found, f"{name} twice"
            found[name] = value
    return found


def compile_(**settings: object) -> SecurityHeaders:
    return SecurityHeaders(SecurityHeaderSettings(enabled=True, **settings))  # type: ignore[arg-type]


def test_off_by_default_and_helmets_set_when_enabled() -> None:
    assert SecurityHeaderSettings().enabled is False
    added = lines(compile_().fields(b"/", [(b"Content-Type", b"text/html")]))
    assert added == dict(HELMET_DEFAULTS)
    assert added["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"  # Helmet 8
    assert "Content-Security-Policy" not in added  # only when configured


def test_a_header_the_app_sent_is_never_added_again_whatever_its_case() -> None:
    edge = compile_()
    headers = [(b"x-frame-options", b"DENY"), (b"REFERRER-POLICY", b"origin"), (b"X-Other", b"1")]
    added = lines(edge.fields(b"/", headers))
    assert "X-Frame-Options" not in added and "Referrer-Policy" not in added
    assert len(added) == len(HELMET_DEFAULTS) - 2
    assert headers[0] == (b"x-frame-options", b"DENY")  # the app's own value passes unchanged
    assert edge.fields(b"/x", list(headers)) == edge.fields(b"/", headers)  # cached block, same answer


def test_x_powered_by_and_configured_names_are_removed() -> None:
    edge = compile_(remove=["X-Powered-By", "Server"])
    headers = [(b"x-powered-by", b"Express"), (b"Server", b"gunicorn"), (b"Content-Type", b"a/b")]
    edge.fields(b"/", headers)
    assert headers == [(b"Content-Type", b"a/b")]


def test_csp_and_changes_to_the_default_set() -> None:
    edge = compile_(
        content_security_policy="default-src 'self';\n  img-src 'self' data:",
        headers={"X-Frame-Options": "DENY", "x-xss-protection": None, "Permissions-Policy": "camera=()"},
    )
    added = lines(edge.fields(b"/", []))
    assert added["Content-Security-Policy"] == "default-src 'self'; img-src 'self' data:"
    assert added["X-Frame-Options"] == "DENY"
    assert "X-XSS-Protection" not in added and "x-xss-protection" not in added
    assert added["Permissions-Policy"] == "camera=()"
    report_only = lines(
        compile_(
            content_security_policy="default-src 'self'", content_security_policy_report_only=True
        ).fields(b"/", [])
    )
    assert (
        "Content-Security-Policy-Report-Only" in report_only and "Content-Security-Policy" not in report_only
    )


def test_per_route_overrides_by_template_or_prefix_first_match_wins() -> None:
    edge = compile_(
        routes=[
            {
                "routes": ["/embed/{id}"],
                "headers": {"X-Frame-Options": None, "Content-Security-Policy": "frame-ancestors *"},
            },
            {"path_prefixes": ["/raw/"], "enabled": False},
            {"path_prefixes": ["/embed/"], "enabled": False},
        ]
    )
    embed = lines(edge.fields(b"/embed/42?x=1", []))
    assert "X-Frame-Options" not in embed and embed["Content-Security-Policy"] == "frame-ancestors *"
    assert embed["X-Content-Type-Options"] == "nosniff"
    # off: nothing added, nothing removed
    assert edge.fields(b"/raw/file.bin", [(b"X-Powered-By", b"php")]) == b""
    assert lines(edge.fields(b"/other", [])) == dict(HELMET_DEFAULTS)
    assert lines(edge.fields(b"/embed/1/2", [])) == {}  # not the template, but the later prefix: off


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"headers": {"Bad Name": "x"}}, "not a header name"),
        ({"headers": {"X-Test": "a\r\nSet-Cookie: x"}}, "cannot carry"),
        ({"headers": {"Connection": "close"}}, "cannot be set here"),
        ({"headers": {"Content-Length": "1"}}, "cannot be set here"),
        ({"headers": {"X-Test": 5}}, "a header value is a string"),
        ({"content_security_policy": "default-src 'self'\x00"}, "cannot carry"),
        ({"routes": [{"enabled": False}]}, "needs routes or path_prefixes"),
        ({"routes": [{"routes": ["embed"]}]}, "must start with '/'"),
    ],
)
def test_settings_that_would_break_responses_are_refused(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        SecurityHeaderSettings(enabled=True, **settings)  # type: ignore[arg-type]
