"""Types of the native ``access_line`` module (``access_line.c``); it is absent where nothing was compiled."""

def proxied_line(
    at: float,
    time_iso: bytes,
    request_id: bytes,
    trace_id: str,
    method: bytes,
    route: bytes,
    path: bytes,
    status: int,
    total_us: int,
    waited_us: int,
    bytes_in: int,
    bytes_out: int,
    client: bytes,
    user_agent: bytes,
    error: bytes,
) -> bytes: ...
def lines_of(entries: list[bytes]) -> bytes: ...
