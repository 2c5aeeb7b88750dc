"""Where the app's log lines come from, each source behind a bounded channel of its own.

In: files (globs, rotation), standard input, ``POST /ingest/logs``. Out: batches of complete lines on
a ``channel.SourceChannel``, consumed by the pipeline.

- ``channel``: one bounded queue per source and the task that drains it.
- ``lines``: bytes to complete lines, with caps on line length and memory held.
- ``tail``: follow files across rename and copy-truncate rotation, from checkpointed offsets.
- ``checkpoint``: file offsets on disk, so a restart neither loses nor repeats a line.
- ``stdin``: lines piped into the sidecar's standard input.
- ``http_ingest``: NDJSON bodies on the admin listener, optionally gzip-compressed.
"""
