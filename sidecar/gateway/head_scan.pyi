"""Types of the native ``head_scan`` module (``head_scan.c``); it is absent where nothing was compiled."""

def scan_response(
    data: bytes, bodiless: bool, /
) -> tuple[int, bytes, bytes | None, int, bool, int] | None: ...
