"""Chunks of bytes to complete lines, with a hard cap on line length and on memory held.

Sources read in large chunks (cheap) and split here. A line longer than the cap is not buffered: once
the partial line passes the cap the splitter drops what it holds and skips to the next newline, so a
10 MB line costs at most ``max_line_bytes`` plus one chunk of memory. ``pending`` says how many bytes
read so far belong to a line not yet complete, which is what a checkpoint must not count as consumed.
"""

from __future__ import annotations

try:  # memchr in C (line_split.c says why); where it was not built, bytes.split gives the same lines
    from sidecar.logs.sources.line_split import split_lines
except ImportError:  # pragma: no cover - exercised by the interpreted test pass

    def split_lines(data: bytes, /) -> list[bytes]:
        return data.split(b"\n")


class LineSplitter:
    """Stateful splitter for one byte stream (a file, standard input, a request body)."""

    __slots__ = ("_partial", "_skipped", "max_line_bytes", "too_long")

    def __init__(self, max_line_bytes: int) -> None:
        self.max_line_bytes = max_line_bytes
        self._partial = b""
        self._skipped = 0  # bytes of an over-long line skipped so far (0: not skipping)
        self.too_long = 0  # over-long lines seen, for the caller to count and reset

    @property
    def pending(self) -> int:
        """Bytes fed but not yet part of a complete (or completely skipped) line."""
        return len(self._partial) + self._skipped

    def feed(self, data: bytes) -> list[bytes]:
        """Complete lines in ``data`` (without their newline); the tail is kept for the next call."""
        if self._skipped:
            newline = data.find(b"\n")
            if newline < 0:
                self._skipped += len(data)
                return []
            data = data[newline + 1 :]
            self._skipped = 0
        lines = split_lines(data)
        if self._partial:  # joined to the first line only, not copied in front of the whole chunk
            lines[0] = self._partial + lines[0]
        self._partial = lines.pop()
        if len(data) + len(lines[0] if lines else b"") > self.max_line_bytes:
            limit = self.max_line_bytes
            kept = [line for line in lines if len(line) <= limit]
            self.too_long += len(lines) - len(kept)
            lines = kept
        if len(self._partial) > self.max_line_bytes:
            self.too_long += 1
            self._skipped = len(self._partial)
            self._partial = b""
        return lines

    def flush(self) -> list[bytes]:
        """The incomplete last line as a line (the stream ended without a final newline)."""
        partial, self._partial = self._partial, b""
        skipping, self._skipped = self._skipped, 0
        return [partial] if partial and not skipping else []

    def reset(self) -> None:
        """Forget everything held (the file was truncated under us)."""
        self._partial = b""
        self._skipped = 0
