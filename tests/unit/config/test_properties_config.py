"""Property tests for every configuration value parsed from outside: durations, thresholds, listen
addresses, check names, loopback detection and the admin exposure rule.

Each property states what the parser promises for *any* input: either a well-formed value or a
``ValueError`` (a ``ConfigError`` at the model level), never another exception, and never a value
that breaks something downstream (NaN intervals, newlines in label values, ports out of range).
"""

from __future__ import annotations

import ipaddress
import math

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from sidecar.config import ConfigError, Settings
from sidecar.core.durations import parse_duration
from sidecar.core.settings_model import ValidationError
from sidecar.probing.settings import CHECK_NAME, CheckConfig, Threshold
from sidecar.serving.addresses import parse_listen
from sidecar.serving.security import is_loopback_host

pytestmark = pytest.mark.timeout(120)
FAST = settings(max_examples=300, deadline=None)

UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SIDECAR_ADMIN_LISTEN", "SIDECAR_ADMIN_TOKEN", "SIDECAR_LISTEN"):
        monkeypatch.delenv(name, raising=False)


# -- durations -------------------------------------------------------------------------------------------


@st.composite
def composite_durations(draw: st.DrawFn) -> tuple[str, float]:
    parts = draw(
        st.lists(st.tuples(st.integers(0, 10_000), st.sampled_from(sorted(UNITS))), min_size=1, max_size=4)
    )
    text = "".join(f"{n}{unit}" for n, unit in parts)
    return text, sum(n * UNITS[unit] for n, unit in parts)


@FAST
@given(composite_durations(), st.sampled_from(["", " ", "\t"]), st.booleans())
def test_composite_durations_add_up(case: tuple[str, float], pad: str, upper: bool) -> None:
    text, seconds = case
    text = text.upper() if upper else text
    assert math.isclose(parse_duration(pad + text + pad), seconds, rel_tol=1e-9, abs_tol=1e-9)


@FAST
@given(st.floats(min_value=0, max_value=1e9, allow_nan=False) | st.integers(0, 10**9))
def test_plain_numbers_are_seconds(value: float) -> None:
    assert parse_duration(value) == float(value)
    assert math.isclose(parse_duration(repr(float(value))), float(value))


@FAST
@given(st.text(max_size=20) | st.floats() | st.integers() | st.none() | st.booleans())
@example("nan")
@example("inf")
@example("-inf")
@example("1e999")
@example(float("nan"))
@example(float("inf"))
def test_any_duration_is_finite_and_not_negative_or_rejected(value: object) -> None:
    try:
        seconds = parse_duration(value)
    except ValueError:
        return
    assert math.isfinite(seconds) and seconds >= 0, f"{value!r} parsed as {seconds}"


# -- thresholds ---------------------------------------------------------------------------------------------


@FAST
@given(st.sampled_from(["<", ">"]), st.decimals(min_value=-1e6, max_value=1e6, places=4, allow_nan=False))
def test_threshold_strings_round_trip(sign: str, number: object) -> None:
    threshold = Threshold.model_validate(f"{sign}{number}")
    assert threshold.below is (sign == "<")
    assert math.isclose(threshold.limit, float(str(number)), rel_tol=1e-12, abs_tol=1e-12)
    again = Threshold.model_validate(str(threshold))
    assert again.below is threshold.below
    assert math.isclose(again.limit, threshold.limit, rel_tol=1e-5, abs_tol=1e-9)


@FAST
@given(st.text(max_size=20) | st.floats() | st.integers() | st.booleans() | st.none())
@example(float("nan"))
@example("<1e999")
def test_any_threshold_is_a_finite_limit_or_rejected(value: object) -> None:
    try:
        threshold = Threshold.model_validate(value)
    except ValidationError:
        return
    assert math.isfinite(threshold.limit), f"{value!r} gave limit {threshold.limit}"


# -- listen addresses ----------------------------------------------------------------------------------------

ports = st.integers(1, 65535)
ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(lambda a: f"[{a}]")
hostnames = st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z][a-z0-9-]{0,10}){0,3}", fullmatch=True)


@FAST
@given(ipv4 | ipv6 | hostnames, ports)
def test_listen_addresses_round_trip(host: str, port: int) -> None:
    assert parse_listen(f"{host}:{port}") == (host.strip("[]"), port)


@FAST
@given(st.text(max_size=30))
@example("host:²")
@example("host:٩٧٩٧")
@example("host:+80")
@example("host: 80")
def test_any_listen_value_is_host_and_valid_port_or_rejected(value: str) -> None:
    try:
        host, port = parse_listen(value)
    except ValueError as exc:
        message = str(exc)
    else:
        port_text = value.rpartition(":")[2]
        assert port_text.isascii() and port_text.isdigit() and int(port_text) == port, value
        assert 0 < port < 65536 and isinstance(host, str)
        return
    assert "host:port" in message, f"{value!r} raised an unfriendly error: {message}"


# -- check names -----------------------------------------------------------------------------------------------------


@FAST
@given(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}", fullmatch=True))
def test_documented_check_names_are_accepted(name: str) -> None:
    assert CheckConfig(name=name, kind="host").name == name


@FAST
@given(st.text(max_size=70))
@example("db\n")
@example("db\r\n")
def test_accepted_check_names_are_safe_label_values(name: str) -> None:
    try:
        CheckConfig(name=name, kind="host")
    except ValidationError:
        return
    assert len(name) <= 63
    assert all(c.isascii() and (c.isalnum() or c in "_.-") for c in name), repr(name)
    assert CHECK_NAME.fullmatch(name)


# -- loopback and the admin exposure rule -------------------------------------------------------------------------------


@FAST
@given(st.ip_addresses())
def test_loopback_matches_ipaddress(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    expected = address.is_loopback
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        expected = address.ipv4_mapped.is_loopback
    assert is_loopback_host(str(address)) is expected
    assert is_loopback_host(f"[{address}]") is expected


@FAST
@given(st.text(max_size=40))
def test_loopback_never_raises(host: str) -> None:
    assert isinstance(is_loopback_host(host), bool)


@settings(max_examples=60, deadline=None)
@given(st.ip_addresses().filter(lambda a: not a.is_loopback), ports)
def test_exposed_admin_without_token_never_starts(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int
) -> None:
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    if mapped is not None and mapped.is_loopback:
        return
    host = f"[{address}]" if address.version == 6 else str(address)
    with pytest.raises((ValidationError, ConfigError)):
        Settings(admin_listen=f"{host}:{port}", default_checks=False)
