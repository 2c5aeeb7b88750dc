"""Small pieces every flow shares; nothing here knows a flow, an endpoint or a listener.

In: nothing of the sidecar's own (this is the bottom layer: it imports no other sidecar package).
Out: types and helpers the flows and ``collectors/`` build on.

- ``settings_model``: validated settings models (msgspec Structs) that collect every problem at once.
- ``durations``: ``5s``, ``250ms``, ``1m30s`` in configuration.
- ``redaction``: secrets out of URLs, error texts and config dumps.
- ``routes``: request paths to route templates, capped, so labels never explode.
- ``http_metrics``: the RED metric families (``http_server_*``) the gateway and access lines share.
- ``bodies``: request bodies read raw and inflated by us, bounded in wire bytes, decoded bytes and time.
- ``own_logs``: the sidecar's own JSON logs, with the request being served in a context variable.
- ``protobuf``: the few protobuf wire primitives the OTLP trace and log encoders share.
"""
