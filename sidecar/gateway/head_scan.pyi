"""Types of the native ``head_scan`` module (``head_scan.c``); it is absent where nothing was compiled."""

def scan_response(
    data: bytes, bodiless: bool, /
) -> tuple[int, bytes, bytes | None, int, bool, int] | None: ...
def scan_request(
    data: bytes, limit: int, /
) -> (
    tuple[bytes, bytes, str, bool, bytes, list[tuple[bytes, bytes]] | None, bytes | None, bytes | None, int]
    | None
): ...
