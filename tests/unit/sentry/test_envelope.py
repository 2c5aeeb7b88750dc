"""The envelope format: real SDK envelopes parse, canonical output round-trips, malformed input is named."""

from __future__ import annotations

import io
import time

import orjson
import pytest
from sentry_sdk.envelope import Envelope as SdkEnvelope
from sentry_sdk.envelope import Item as SdkItem
from sentry_sdk.envelope import PayloadRef

from sidecar.sentry.dsn import Dsn
from sidecar.sentry.envelope import Envelope, EnvelopeError, category_of, parse

pytestmark = pytest.mark.timeout(30)


def sdk_envelope_bytes() -> bytes:
    """An envelope as sentry-sdk writes it: event, an attachment with a length, a session."""
    env = SdkEnvelope(headers={"event_id": "9ec79c33ec9942ab8353589fcb2e04dc", "dsn": "https://k@o.io/1"})
    env.add_event({"event_id": "9ec79c33ec9942ab8353589fcb2e04dc", "message": "hi"})
    env.add_item(SdkItem(payload=PayloadRef(bytes=b"\x00\x01binary\n"), type="attachment", filename="a.bin"))
    env.add_item(SdkItem(payload=PayloadRef(json={"sid": "x", "status": "ok"}), type="session"))
    out = io.BytesIO()
    env.serialize_into(out)
    return out.getvalue()


def test_parses_what_sentry_sdk_writes() -> None:
    envelope = parse(sdk_envelope_bytes())
    assert envelope.event_id == "9ec79c33ec9942ab8353589fcb2e04dc"
    assert [i.type for i in envelope.items] == ["event", "attachment", "session"]
    assert envelope.items[0].json()["message"] == "hi"
    assert envelope.items[1].payload == b"\x00\x01binary\n"
    assert envelope.categories == {"error", "attachment", "session"}


def test_canonical_output_round_trips_and_sdk_can_read_it() -> None:
    envelope = parse(sdk_envelope_bytes())
    data = envelope.to_bytes()
    again = parse(data)
    assert [(i.type, i.payload) for i in again.items] == [(i.type, i.payload) for i in envelope.items]
    sdk = SdkEnvelope.deserialize(data)
    assert [i.type for i in sdk.items] == ["event", "attachment", "session"]


def test_items_without_length_end_at_newline_and_trailing_newlines_are_fine() -> None:
    body = b'{"event_id":"abc"}\n{"type":"event"}\n{"message":"a"}\n{"type":"session"}\n{"sid":1}\n\n'
    envelope = parse(body)
    assert [i.payload for i in envelope.items] == [b'{"message":"a"}', b'{"sid":1}']


def test_header_only_envelope_and_last_item_without_newline() -> None:
    assert parse(b"{}").items == []
    envelope = parse(b'{}\n{"type":"event","length":2}\n{}')
    assert envelope.items[0].payload == b"{}"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"", "empty envelope"),
        (b"not json\n", "envelope header is not valid JSON"),
        (b"[1,2]\n", "envelope header must be a JSON object"),
        (b'{}\n{"type": "event"\n{}\n', "item 1 header is not valid JSON"),
        (b'{}\n{"length": 2}\n{}\n', "item 1 header has no 'type'"),
        (b'{}\n{"type":"event","length":50}\n{"a":1}\n', "truncated item"),
        (b'{}\n{"type":"event","length":3}\n{"a":1}\n', "length mismatch"),
        (b'{}\n{"type":"event","length":-1}\n{}\n', "non-negative integer"),
        (b'{}\n{"type":"event","length":"2"}\n{}\n', "non-negative integer"),
    ],
)
def test_malformed_envelopes_say_what_is_wrong(body: bytes, fragment: str) -> None:
    with pytest.raises(EnvelopeError, match=fragment):
        parse(body)


def test_for_event_and_categories() -> None:
    envelope = Envelope.for_event({"event_id": "e1", "message": "x"}, {"dsn": "https://k@h/1"})
    assert envelope.headers == {"event_id": "e1", "dsn": "https://k@h/1"}
    assert orjson.loads(envelope.items[0].payload)["message"] == "x"
    assert category_of("transaction") == "transaction"
    assert category_of("client_report") == "internal"
    assert category_of("something_new") == "default"


def test_dsn_parsing_masks_the_key() -> None:
    dsn = Dsn.parse("https://abc123@o1.ingest.sentry.io/prefix/42")
    assert dsn.public_key == "abc123"
    assert dsn.project_id == "42"
    assert dsn.envelope_url == "https://o1.ingest.sentry.io/prefix/api/42/envelope/"
    assert dsn.public == "https://abc123@o1.ingest.sentry.io/prefix/42"
    assert "abc123" not in str(dsn) and "abc123" not in repr(dsn)
    assert "sentry_key=abc123" in dsn.auth_header()
    legacy = Dsn.parse("http://pub:secret@127.0.0.1:9000/7")
    assert legacy.public == "http://pub@127.0.0.1:9000/7"
    for bad in ("ftp://k@h/1", "https://h/1", "https://k@h/", "nonsense"):
        with pytest.raises(ValueError, match=r"DSN|URL") as info:
            Dsn.parse(bad)
        assert "k@" not in str(info.value)


def many_items(count: int) -> bytes:
    item = b'{"type":"session"}\n{"sid":"0123456789abcdef","status":"ok","errors":0}\n'
    return b'{"event_id":"9ec79c33ec9942ab8353589fcb2e04dc"}\n' + item * count


def best_of(runs: int, body: bytes) -> float:
    times = []
    for _ in range(runs):
        started = time.process_time()
        envelope = parse(body)
        times.append(time.process_time() - started)
    assert len(envelope.items) == body.count(b"\n") // 2
    return min(times)


def test_parsing_is_linear_in_the_number_of_items() -> None:
    """10,000 items cost about ten times 1,000 in CPU time (the old parser: 270 times)."""
    small, large = many_items(1_000), many_items(10_000)
    ratio = best_of(5, large) / best_of(5, small)
    assert ratio < 25, f"10k items took {ratio:.1f}x the time of 1k items"


def test_trailing_whitespace_after_many_items_is_skipped_once() -> None:
    body = many_items(2_000) + b"\n" * 100_000 + b" \t\r\n" * 1000
    assert len(parse(body).items) == 2_000
    with pytest.raises(EnvelopeError, match="more than 10000 items"):
        parse(many_items(10_001))
