"""Whether the app is gone during a drain: ``exit_on_zero_active`` (Istio: EXIT_ON_ZERO_ACTIVE_CONNECTIONS).

Why: the drain after SIGTERM keeps the gateway serving for ``drain_period`` so load balancers can
withdraw the endpoint. That only helps while the app still answers. When the app went first (a Node app
exits on SIGTERM; a native Kubernetes sidecar is told to stop only after the app has exited), every
request for the rest of the drain would get a 502. Once the app refuses connections there is nothing left
to drain for: the gateway stops accepting at once (a refused connection is something load balancers
retry elsewhere, a 502 is not) and the process exits as soon as nothing is in flight.

"Gone" means refused (or, for a unix socket, no socket file): the app is not listening any more. A slow
or silent app is not gone; a timeout keeps the drain going.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Final

from sidecar.gateway.settings import UpstreamAddress

POLL: Final = 0.25  # seconds between connection attempts when no request tells us first
CONNECT_TIMEOUT: Final = 1.0


async def app_refuses(address: UpstreamAddress) -> bool:
    """True when a connection to the app is refused now; False when it connects, or cannot tell."""
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT):
            if address.unix_path is not None:
                _, writer = await asyncio.open_unix_connection(address.unix_path)
            else:
                _, writer = await asyncio.open_connection(address.host, address.port)
    except (ConnectionRefusedError, FileNotFoundError):
        return True
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return False


async def until_app_gone(
    address: UpstreamAddress, refused: asyncio.Event, period: float, poll: float = POLL
) -> bool:
    """Wait up to ``period`` seconds; True as soon as the app is gone, False when the period ran out.

    ``refused`` is set by the upstream pool when a proxied request's connection was refused, so
    traffic tells at once; between requests a connection attempt every ``poll`` seconds does.
    """
    refused.clear()  # a refusal before the drain (an app restart long ago) says nothing about now
    loop = asyncio.get_running_loop()
    deadline = loop.time() + period
    while True:
        try:  # an app too busy to accept does not stretch the drain past ``period``
            async with asyncio.timeout(max(0.0, deadline - loop.time())):
                if await app_refuses(address):
                    return True
        except TimeoutError:
            return False
        left = deadline - loop.time()
        if left <= 0:
            return False
        try:
            async with asyncio.timeout(min(poll, left)):
                await refused.wait()
        except TimeoutError:
            continue
        return True
