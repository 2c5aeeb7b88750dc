"""/metrics over HTTP: the step-wise encoder answers every ``Accept`` as client_python would, gzips when
asked, and stays behind ``metrics_auth``."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.exposition import choose_encoder

from sidecar.app_keys import REGISTRY
from sidecar.config import load_settings
from sidecar.server import create_app
from tests.unit.serving.test_text_exposition import ACCEPTS, mask

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


async def test_metrics_endpoint_negotiates_and_compresses() -> None:
    app = create_app(load_settings(None, {"SIDECAR_DEFAULT_CHECKS": "false"}))
    async with TestClient(TestServer(app)) as client:

        async def scrape(accept: str, encoding: str) -> tuple[ClientResponse, bytes, bytes]:
            resp = await client.get("/metrics", headers={"Accept": accept, "Accept-Encoding": encoding})
            body = await resp.read()  # aiohttp undoes the gzip
            return resp, body, choose_encoder(accept)[0](app[REGISTRY])

        for accept in ACCEPTS:
            for encoding in ("gzip, deflate", ""):
                resp, body, theirs = await scrape(accept, encoding)
                if mask(body) != mask(theirs):  # a probe result landed between the two renders: again
                    resp, body, theirs = await scrape(accept, encoding)
                assert mask(body) == mask(theirs)
                assert resp.status == 200
                assert resp.headers["Content-Type"] == choose_encoder(accept)[1]
                assert resp.headers.get("Content-Encoding") == ("gzip" if encoding else None)
                assert resp.headers["Vary"] == "Accept, Accept-Encoding"
                assert body.endswith(b"# EOF\n") == ("openmetrics" in resp.headers["Content-Type"])


async def test_metrics_endpoint_keeps_its_credentials(tmp_path: Path) -> None:
    config = tmp_path / "sidecar.yaml"
    config.write_text("metrics_auth: {bearer_token: s3cret}\n")
    settings = load_settings(config, {"SIDECAR_DEFAULT_CHECKS": "false"})
    async with TestClient(TestServer(create_app(settings))) as client:
        denied = await client.get("/metrics", headers={"Accept-Encoding": "gzip"})
        assert denied.status == 401 and "sidecar_" not in await denied.text()
        resp = await client.get("/metrics", headers={"Authorization": "Bearer s3cret"})
        assert resp.status == 200 and "\nsidecar_ready " in await resp.text()
