"""Stack texts from Node and CPython become Sentry exceptions with frames oldest first."""

from __future__ import annotations

import pytest

from sidecar.sentry.stacktrace import parse_stack

pytestmark = pytest.mark.timeout(30)

NODE = (
    "TypeError: x is not a function\n"
    "    at foo (/app/src/a.js:10:5)\n"
    "    at async Promise.all (index 0)\n"
    "    at /app/node_modules/x/y.js:1:2\n"
    "    at process.processTicksAndRejections (node:internal/process/task_queues:95:5)\n"
    "    at async Server.handle (file:///app/src/server.mjs:42:7)"
)

PYTHON_CHAINED = """Traceback (most recent call last):
  File "/app/store.py", line 3, in load
    return cache[key]
           ~~~~~^^^^^
KeyError: 'user:17'

The above exception was the direct cause of the following exception:

Traceback (most recent call last):
  File "/usr/local/lib/python3.12/site-packages/flask/app.py", line 880, in full_dispatch_request
    rv = self.dispatch_request()
  File "/app/views.py", line 12, in show
    user = load(key)
myapp.errors.NotFound: user 17 not found
  details on a second line"""


def test_node_frames_are_reversed_with_in_app_flags() -> None:
    platform, [exc] = parse_stack(NODE)
    assert platform == "node"
    assert (exc.type, exc.value) == ("TypeError", "x is not a function")
    frames = [(f.function, f.filename, f.lineno, f.colno, f.in_app) for f in exc.frames]
    assert frames == [
        ("Server.handle", "/app/src/server.mjs", 42, 7, True),
        ("process.processTicksAndRejections", "node:internal/process/task_queues", 95, 5, False),
        (None, "/app/node_modules/x/y.js", 1, 2, False),
        ("Promise.all", "index 0", None, None, False),
        ("foo", "/app/src/a.js", 10, 5, True),
    ]
    assert exc.top_in_app is not None and exc.top_in_app.function == "foo"
    sentry = exc.to_sentry("sidecar.logs")
    assert sentry["stacktrace"]["frames"][-1]["function"] == "foo"
    assert sentry["mechanism"] == {"type": "sidecar.logs", "handled": False}


def test_node_error_with_code_and_bare_error() -> None:
    _, [exc] = parse_stack("Error [ERR_HTTP_HEADERS_SENT]: Cannot set headers\n    at f (/app/a.js:1:1)")
    assert (exc.type, exc.value) == ("Error [ERR_HTTP_HEADERS_SENT]", "Cannot set headers")
    _, [bare] = parse_stack("Error\n    at f (/app/a.js:1:1)")
    assert (bare.type, bare.value) == ("Error", "")
    _, [text] = parse_stack("something odd happened: here\n    at f (/app/a.js:1:1)")
    assert (text.type, text.value) == ("Error", "something odd happened: here")


def test_python_chained_exceptions_cause_first() -> None:
    platform, exceptions = parse_stack(PYTHON_CHAINED)
    assert platform == "python"
    assert [(e.type, e.module) for e in exceptions] == [("KeyError", None), ("NotFound", "myapp.errors")]
    cause, main = exceptions
    assert cause.value == "'user:17'"
    assert cause.frames[0].context_line == "return cache[key]"  # the ~~~^^^ marker line is skipped
    assert main.value == "user 17 not found\n  details on a second line"
    assert [(f.filename, f.function, f.lineno, f.in_app) for f in main.frames] == [
        ("/usr/local/lib/python3.12/site-packages/flask/app.py", "full_dispatch_request", 880, False),
        ("/app/views.py", "show", 12, True),
    ]


def test_python_simple_traceback() -> None:
    text = 'Traceback (most recent call last):\n  File "/app/x.py", line 3, in f\n    code\nValueError: bad'
    _, [exc] = parse_stack(text)
    assert (exc.type, exc.value, exc.frames[0].lineno, exc.frames[0].context_line) == (
        "ValueError",
        "bad",
        3,
        "code",
    )


def test_unknown_text_gives_no_exceptions() -> None:
    assert parse_stack("java.lang.NullPointerException\n\tat com.x.Y.z(Y.java:1)") == ("other", [])
    assert parse_stack("") == ("other", [])
