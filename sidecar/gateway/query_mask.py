"""Request targets for logs: the path as sent, query keys kept, every query value masked.

Query strings carry tokens, e-mail addresses and signed URLs; their keys are what an engineer needs
(``/search?q=***&page=***``). A fragment never reaches a server, but a client may send one anyway:
it is dropped.
"""

from __future__ import annotations

MASK = "***"


def mask_query(target: bytes) -> str:
    """``/a/b?token=abc&x`` -> ``/a/b?token=***&x``; non-UTF-8 bytes are replaced, never raise."""
    if b"?" not in target and b"#" not in target:
        return target.decode("utf-8", "replace")
    text = target.decode("utf-8", "replace")
    path, sep, query = text.partition("?")
    if not sep:
        return path.partition("#")[0]
    query = query.partition("#")[0]
    masked = []
    for pair in query.split("&"):
        key, eq, _ = pair.partition("=")
        masked.append(f"{key}={MASK}" if eq else key)
    return f"{path}?{'&'.join(masked)}"


def path_of(target: bytes) -> bytes:
    """The path of an origin-form or absolute-form target, without the query (for route labels)."""
    if target[:1] != b"/":
        scheme, sep, rest = target.partition(b"://")
        if sep and scheme.isalpha():
            slash = rest.find(b"/")
            target = rest[slash:] if slash >= 0 else b"/"
    return target.partition(b"?")[0]
