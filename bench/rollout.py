"""A rolling update of the shipped Deployment, replayed on loopback: does any request fail?

Each pod is a real Node app (``tests/e2e/node_app/app.js``: no SIGTERM handler, so SIGTERM ends it at
once, like a default Node app) and a real sidecar (``python -m sidecar run``), on free loopback ports. A
small asyncio load balancer stands in for kube-proxy: it balances TCP connections (so a keep-alive
connection stays on its pod, as through conntrack), adds a pod when its readiness turns true and drops
it when the pod is deleted or turns unready, each only after a propagation delay. Clients with keep-alive
connections send requests at a fixed rate. Then every pod is replaced as a Deployment with maxSurge 1 /
maxUnavailable 0 does: start a new pod, wait until it is Ready, delete an old one; the kubelet's part
follows the manifest: native sidecar first (startupProbe) then the app; on deletion the app's preStop,
SIGTERM, and only after the app exited the sidecar's SIGTERM; SIGKILL at the end of the grace period.
The pre-1.29 layout starts both containers together (after the sidecar's postStart, when it has one)
and stops them together, each after its own preStop.

Every duration comes from ``deploy/kubernetes`` (grace period, preStop sleep, probe periods, the
sidecar's drain settings and check interval from the ConfigMap), multiplied by ``--time-scale``
(default 0.1: a 10 s preStop becomes 1 s), and so is the propagation delay. Not scaled: how long the
processes take to start, and request latency. The ConfigMap's database and Redis checks are left out
(there is no database here); its ``app`` check is kept, pointed at the pod's app.

    .venv/bin/python bench/rollout.py [--pods 5] [--rate 100] [--layout native|pre-1.29|old|all]

Prints, per layout: requests sent, failed (by kind), p50/p99 in steady state and during the rollout,
and each old pod's stop: when its app and sidecar exited after deletion, and whether SIGKILL was needed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from bench._common import free_port
from bench.rollout_manifest import (
    ADMIN_PORT,
    APP_PORT,
    GATEWAY_PORT,
    HEALTH_PORT,
    NATIVE,
    PRE_129,
    ROOT,
    PodPlan,
    Probe,
    load_plan,
)

APP_JS = ROOT / "tests" / "e2e" / "node_app" / "app.js"
HOST = "127.0.0.1"
PROPAGATION = 3.0  # seconds, before scaling: endpoint changes reaching kube-proxy and load balancers
WORK_MS = 10  # each request takes the app this long, so some are in flight whenever a pod stops
CLIENTS = 8  # keep-alive clients sharing the load, each with its own connection pool
CLIENT_CONNECTIONS = 2
REQUEST_TIMEOUT = 10.0
START_TIMEOUT = 30.0


# -- processes ----------------------------------------------------------------------------------------


@dataclass
class Pod:
    """One pod: its ports, its two processes, and what the kubelet knows about it."""

    name: str
    plan: PodPlan
    workdir: Path
    app_port: int = field(default_factory=free_port)
    gateway_port: int = field(default_factory=free_port)
    health_port: int = field(default_factory=free_port)
    admin_port: int = field(default_factory=free_port)
    app: asyncio.subprocess.Process | None = None
    sidecar: asyncio.subprocess.Process | None = None
    ready: bool = False
    became_ready: asyncio.Event = field(default_factory=asyncio.Event)
    deleted_at: float | None = None
    app_exited_at: float | None = None
    sidecar_exited_at: float | None = None
    killed: list[str] = field(default_factory=list)
    prober: asyncio.Task[None] | None = None

    def port(self, in_pod: int) -> int:
        """The loopback port standing in for a port number the manifest uses inside the pod."""
        ports = {
            APP_PORT: self.app_port,
            GATEWAY_PORT: self.gateway_port,
            HEALTH_PORT: self.health_port,
            ADMIN_PORT: self.admin_port,
        }
        return ports[in_pod]

    def sidecar_config(self) -> str:
        config = dict(self.plan.sidecar_config)
        config["default_checks"] = False  # no database or Redis here; the app check stays
        checks = []
        for check in config.get("checks") or []:
            target = str(check.get("target", ""))
            if f"127.0.0.1:{APP_PORT}" in target:
                checks.append({**check, "target": target.replace(f":{APP_PORT}", f":{self.app_port}")})
        config["checks"] = checks
        gateway = dict(config.get("gateway") or {})
        gateway["listen"] = f"{HOST}:{self.gateway_port}"
        gateway["upstream"] = f"http://{HOST}:{self.app_port}"
        gateway["access_log"] = {"enabled": False}
        config["gateway"] = gateway
        config["listen"] = f"{HOST}:{self.health_port}"
        config["admin_listen"] = f"{HOST}:{self.admin_port}"
        config["log_level"] = "warning"
        return yaml.safe_dump(config)

    async def start_sidecar(self) -> None:
        path = self.workdir / f"{self.name}-sidecar.yaml"
        path.write_text(self.sidecar_config())
        env = {k: v for k, v in os.environ.items() if not k.startswith("SIDECAR_")}
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
        for name in ("DATABASE_URL", "REDIS_URL", "SENTRY_DSN"):
            env.pop(name, None)
        with (self.workdir / f"{self.name}-sidecar.log").open("wb") as out:
            self.sidecar = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "sidecar", "run", "--config", str(path),
                env=env, stdout=out, stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip

    async def start_app(self) -> None:
        with (self.workdir / f"{self.name}-app.log").open("wb") as out:
            self.app = await asyncio.create_subprocess_exec(
                NODE, str(APP_JS), str(self.app_port), stdout=out, stderr=asyncio.subprocess.STDOUT
            )

    def logs(self) -> str:
        parts = []
        for name in ("sidecar", "app"):
            path = self.workdir / f"{self.name}-{name}.log"
            if path.exists():
                parts.append(f"--- {self.name} {name}\n{path.read_text(errors='replace')[-3000:]}")
        return "\n".join(parts)

    def pids(self) -> list[int]:
        return [p.pid for p in (self.app, self.sidecar) if p is not None and p.returncode is None]

    async def kill_all(self) -> None:
        """End both processes by PID, whatever state they are in (the simulator's own cleanup)."""
        if self.prober is not None:
            self.prober.cancel()
        for proc in (self.app, self.sidecar):
            if proc is not None and proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()


NODE = shutil.which("node") or "node"


# -- the load balancer (kube-proxy) -------------------------------------------------------------------


class Balancer:
    """TCP connections round-robin over the pods it believes ready; changes land after ``propagation``."""

    def __init__(self, propagation: float, retry_refused: bool = False) -> None:
        self.propagation = propagation
        self.retry_refused = retry_refused
        self.endpoints: list[Pod] = []
        self.refused = 0
        self._next = 0
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, HOST, 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    def readiness_changed(self, pod: Pod, ready: bool) -> None:
        asyncio.get_running_loop().call_later(self.propagation, self._apply, pod, ready)

    def pod_deleted(self, pod: Pod) -> None:
        """The endpoints controller marks a deleted pod terminating at once; kube-proxy hears it later."""
        asyncio.get_running_loop().call_later(self.propagation, self._apply, pod, False)

    def _apply(self, pod: Pod, ready: bool) -> None:
        if ready and pod.deleted_at is None and pod.ready and pod not in self.endpoints:
            self.endpoints.append(pod)
        elif not ready and pod in self.endpoints:
            self.endpoints.remove(pod)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._pipes.add(task)
        try:
            await self._serve(reader, writer)
        finally:
            self._pipes.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tries = len(self.endpoints) if self.retry_refused else 1
        for _ in range(max(tries, 1)):
            if not self.endpoints:
                break
            pod = self.endpoints[self._next % len(self.endpoints)]
            self._next += 1
            try:
                up_reader, up_writer = await asyncio.open_connection(HOST, pod.gateway_port)
            except OSError:
                self.refused += 1
                continue
            await _pipe_both(reader, writer, up_reader, up_writer)
            return
        writer.transport.abort()  # as iptables would: the client's connection is refused / reset

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)


async def _pipe_both(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    up_reader: asyncio.StreamReader,
    up_writer: asyncio.StreamWriter,
) -> None:
    async def copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()

    tasks = [asyncio.ensure_future(copy(reader, up_writer)), asyncio.ensure_future(copy(up_reader, writer))]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for w in (writer, up_writer):
            w.close()


# -- the kubelet and the Deployment controller --------------------------------------------------------


class Cluster:
    """Starts, probes and stops pods as the kubelet does, for one layout."""

    def __init__(self, plan: PodPlan, balancer: Balancer, workdir: Path) -> None:
        self.plan = plan
        self.balancer = balancer
        self.workdir = workdir
        self.pods: list[Pod] = []
        self._count = 0
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Cluster:
        # kubelet probes: a fresh connection each time
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.gather(*(p.kill_all() for p in self.pods))
        if self._session is not None:
            await self._session.close()

    async def probe(self, pod: Pod, probe: Probe) -> bool:
        assert self._session is not None
        url = f"http://{HOST}:{pod.port(probe.port)}{probe.path}"
        try:
            async with self._session.get(url, timeout=aiohttp.ClientTimeout(total=probe.timeout)) as resp:
                await resp.read()
                return 200 <= resp.status < 400
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def start_pod(self) -> Pod:
        """Create a pod; returns once its containers run (readiness is probed in the background)."""
        self._count += 1
        pod = Pod(f"pod-{self._count}", self.plan, self.workdir)
        self.pods.append(pod)
        await pod.start_sidecar()
        if self.plan.native_sidecar and self.plan.startup is not None:
            await self._until_started(pod, self.plan.startup)  # the app waits for the startupProbe
        elif self.plan.sidecar_post_start_waits:  # pre-1.29: postStart polls /livez, the app waits
            await self._until(pod, Probe("/livez", HEALTH_PORT, 0.1, 1.0, 1, 1), START_TIMEOUT)
        await pod.start_app()
        pod.prober = asyncio.create_task(self._readiness(pod))
        return pod

    async def _until_started(self, pod: Pod, probe: Probe) -> None:
        await asyncio.sleep(probe.initial_delay)
        # process start-up is not scaled, so neither is the probe's budget (failureThreshold x period)
        tries = max(probe.failure_threshold, int(START_TIMEOUT / max(probe.period, 0.01)))
        for _ in range(tries):
            if await self.probe(pod, probe):
                return
            await asyncio.sleep(probe.period)
        raise RuntimeError(f"{pod.name}: startupProbe failed {tries} times\n{pod.logs()}")

    async def _until(self, pod: Pod, probe: Probe, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not await self.probe(pod, probe):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{pod.name}: {probe.path} did not answer within {timeout}s")
            await asyncio.sleep(probe.period)

    async def _readiness(self, pod: Pod) -> None:
        """The kubelet's readiness probe on the sidecar; the pod's Ready condition follows it."""
        probe = self.plan.readiness
        await asyncio.sleep(probe.initial_delay)
        passes = fails = 0
        while True:
            ok = await self.probe(pod, probe)
            passes, fails = (passes + 1, 0) if ok else (0, fails + 1)
            if not pod.ready and passes >= probe.success_threshold:
                pod.ready = True
                pod.became_ready.set()
                self.balancer.readiness_changed(pod, True)
            elif pod.ready and fails >= probe.failure_threshold:
                pod.ready = False
                self.balancer.readiness_changed(pod, False)
            await asyncio.sleep(probe.period)

    async def delete_pod(self, pod: Pod) -> None:
        """The kubelet's termination: preStop, SIGTERM, grace period, SIGKILL, in the layout's order."""
        loop = asyncio.get_running_loop()
        pod.deleted_at = loop.time()
        deadline = pod.deleted_at + self.plan.grace
        self.balancer.pod_deleted(pod)
        app_pre_stop = self._app_pre_stop(pod)
        if self.plan.native_sidecar:  # main containers first; sidecars once they all exited
            await self._stop_container(pod, "app", app_pre_stop, deadline)
            await self._stop_container(pod, "sidecar", None, deadline)
        else:
            await asyncio.gather(
                self._stop_container(pod, "app", app_pre_stop, deadline),
                self._stop_container(pod, "sidecar", None, deadline),
            )
        if pod.prober is not None:
            pod.prober.cancel()

    def _app_pre_stop(self, pod: Pod) -> Callable[[], Awaitable[None]] | None:
        hook = self.plan.app_pre_stop
        if hook is None:
            return None

        async def admin(path: str) -> None:  # wget -T 2 --post-data '' http://127.0.0.1:<admin><path>
            assert self._session is not None
            assert hook.drain_port is not None
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                url = f"http://{HOST}:{pod.port(hook.drain_port)}{path}"
                async with self._session.post(url, timeout=aiohttp.ClientTimeout(total=2)) as resp:
                    await resp.read()

        async def run() -> None:
            if hook.drain_port is not None:
                await admin("/drain")
            await asyncio.sleep(hook.sleep)
            if hook.undrains:
                await admin("/undrain")

        return run

    async def _stop_container(
        self, pod: Pod, name: str, pre_stop: Callable[[], Awaitable[None]] | None, deadline: float
    ) -> None:
        loop = asyncio.get_running_loop()
        proc = pod.app if name == "app" else pod.sidecar
        assert proc is not None
        if pre_stop is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(pre_stop(), max(0.0, deadline - loop.time()))
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), max(0.0, deadline - loop.time()))
        except TimeoutError:
            pod.killed.append(name)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        exited = loop.time() - (pod.deleted_at or 0.0)
        if name == "app":
            pod.app_exited_at = exited
        else:
            pod.sidecar_exited_at = exited

    async def rolling_update(self, old: list[Pod]) -> list[Pod]:
        """maxSurge new pods at a time; an old pod is deleted each time a new one is Ready."""
        if self.plan.max_unavailable != 0 or self.plan.max_surge < 1:
            raise ValueError("the simulator replays maxUnavailable: 0 with maxSurge >= 1")
        stops: list[asyncio.Task[None]] = []
        new: list[Pod] = []
        waiting = list(old)
        while waiting:
            batch = [await self.start_pod() for _ in range(min(self.plan.max_surge, len(waiting)))]
            for pod in batch:
                await asyncio.wait_for(pod.became_ready.wait(), START_TIMEOUT)
                stops.append(asyncio.create_task(self.delete_pod(waiting.pop(0))))
            new += batch
        await asyncio.gather(*stops)
        return new


# -- load ---------------------------------------------------------------------------------------------


@dataclass
class Sample:
    started: float
    latency: float
    failure: str  # "" when the request succeeded


class Load:
    """Requests at a fixed rate, spread over keep-alive clients, each recorded with its outcome."""

    def __init__(self, url: str, rate: float, keepalive: bool = True) -> None:
        self.url = url
        self.rate = rate
        self.keepalive = keepalive
        self.samples: list[Sample] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._sessions: list[aiohttp.ClientSession] = []

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        self._sessions = [
            aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=CLIENT_CONNECTIONS, force_close=not self.keepalive)
            )
            for _ in range(CLIENTS)
        ]
        try:
            at = loop.time()
            n = 0
            while not stop.is_set():
                at += 1.0 / self.rate
                await asyncio.sleep(max(0.0, at - loop.time()))
                task = asyncio.create_task(self._one(self._sessions[n % CLIENTS]))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                n += 1
            await asyncio.gather(*self._tasks)
        finally:
            for session in self._sessions:
                await session.close()

    async def _one(self, session: aiohttp.ClientSession) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        failure = ""
        try:
            timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
            async with session.get(f"{self.url}/work?ms={WORK_MS}", timeout=timeout) as resp:
                body = await resp.read()
                if resp.status != 200 or body != b"hello":
                    failure = f"HTTP {resp.status}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            failure = type(exc).__name__
        self.samples.append(Sample(started, loop.time() - started, failure))


# -- one run ------------------------------------------------------------------------------------------


@dataclass
class Result:
    layout: str
    source: str
    pods: int
    rate: float
    sent: int
    failures: Counter[str]
    steady_p50_ms: float
    steady_p99_ms: float
    rollout_p50_ms: float
    rollout_p99_ms: float
    rollout_seconds: float
    stops: list[tuple[str, float, float, list[str]]]  # pod, app exited, sidecar exited (s after deletion)
    lb_refused: int

    @property
    def failed(self) -> int:
        return sum(self.failures.values())


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run_rollout(
    plan: PodPlan,
    *,
    layout: str,
    pods: int = 5,
    rate: float = 100.0,
    scale: float = 0.1,
    steady_seconds: float = 5.0,
    propagation: float = PROPAGATION,
    retry_refused: bool = False,
    keepalive: bool = True,
    workdir: Path | None = None,
) -> Result:
    """Start ``pods`` pods, load them at ``rate``, replace every one, and measure what the clients saw."""
    plan = plan.scaled(scale)
    own_dir = workdir is None
    workdir = workdir or Path(tempfile.mkdtemp(prefix="rollout-"))
    balancer = Balancer(propagation * scale, retry_refused=retry_refused)
    await balancer.start()
    stop = asyncio.Event()
    load = Load(f"http://{HOST}:{balancer.port}", rate, keepalive)
    loop = asyncio.get_running_loop()
    try:
        async with Cluster(plan, balancer, workdir) as cluster:
            first = list(await asyncio.gather(*(cluster.start_pod() for _ in range(pods))))
            await asyncio.wait_for(asyncio.gather(*(p.became_ready.wait() for p in first)), START_TIMEOUT)
            while len(balancer.endpoints) < pods:
                await asyncio.sleep(0.05)
            load_task = asyncio.create_task(load.run(stop))
            await asyncio.sleep(steady_seconds)
            rollout_started = loop.time()
            await cluster.rolling_update(first)
            rollout_ended = loop.time()
            await asyncio.sleep(1.0)  # the last endpoint changes land; the new pods serve alone
            stop.set()
            await load_task
            stops = [(p.name, p.app_exited_at or 0.0, p.sidecar_exited_at or 0.0, p.killed) for p in first]
    finally:
        stop.set()
        await balancer.close()
        if own_dir:
            shutil.rmtree(workdir, ignore_errors=True)
    warm = [s for s in load.samples if s.started >= rollout_started - steady_seconds + 1.0]
    steady = [s.latency for s in warm if s.started < rollout_started and not s.failure]
    during = [s.latency for s in warm if rollout_started <= s.started <= rollout_ended and not s.failure]
    failures = Counter(s.failure for s in load.samples if s.failure)
    return Result(
        layout=layout,
        source=plan.source,
        pods=pods,
        rate=rate,
        sent=len(load.samples),
        failures=failures,
        steady_p50_ms=percentile(steady, 0.50) * 1000,
        steady_p99_ms=percentile(steady, 0.99) * 1000,
        rollout_p50_ms=percentile(during, 0.50) * 1000,
        rollout_p99_ms=percentile(during, 0.99) * 1000,
        rollout_seconds=rollout_ended - rollout_started,
        stops=stops,
        lb_refused=balancer.refused,
    )


def _old_with_exit() -> PodPlan:
    plan = load_plan(PRE_129).without_hooks()
    plan.sidecar_config["gateway"]["exit_on_zero_active"] = True
    return plan


LAYOUTS: dict[str, tuple[str, Callable[[], PodPlan], bool]] = {
    # name: (what it is, plan, load balancer retries refused connections)
    "native": ("native sidecar (deploy/kubernetes/deployment.yaml)", lambda: load_plan(NATIVE), False),
    "pre-1.29": (
        "two containers with hooks (deploy/kubernetes/pre-1.29/)",
        lambda: load_plan(PRE_129),
        False,
    ),
    "old": (
        "old two-container example: no hooks, both SIGTERMed at once, sidecar before exit_on_zero_active",
        lambda: load_plan(PRE_129).without_hooks(),
        False,
    ),
    "old+exit": (
        "as old, with exit_on_zero_active, behind a balancer that retries refused connects (ingress-nginx)",
        _old_with_exit,
        True,
    ),
}


def report(result: Result, description: str) -> str:
    failures = ", ".join(f"{n} {kind}" for kind, n in result.failures.most_common()) or "none"
    lines = [
        f"== {result.layout}: {description}",
        f"   {result.pods} pods, {result.rate:.0f} req/s, rollout {result.rollout_seconds:.1f}s;"
        f" requests {result.sent}, failed {result.failed} ({failures})",
        f"   latency steady p50 {result.steady_p50_ms:.1f} ms p99 {result.steady_p99_ms:.1f} ms;"
        f" during rollout p50 {result.rollout_p50_ms:.1f} ms p99 {result.rollout_p99_ms:.1f} ms",
        f"   load balancer: {result.lb_refused} connects refused by a pod",
    ]
    for name, app_exit, sidecar_exit, killed in result.stops:
        kill = f", SIGKILL: {', '.join(killed)}" if killed else ""
        lines.append(
            f"   {name}: app exited {app_exit:.2f}s, sidecar {sidecar_exit:.2f}s after deletion{kill}"
        )
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> int:
    names = list(LAYOUTS) if args.layout == "all" else [args.layout]
    print(
        f"time scale {args.time_scale} (manifest durations x{args.time_scale}); propagation delay"
        f" {PROPAGATION * args.time_scale:.2f}s; {CLIENTS} clients"
        f" ({'a connection per request' if args.no_keepalive else 'keep-alive'}); each request {WORK_MS} ms"
        " of app work; figures taken on a shared 2-core machine under other load",
        flush=True,
    )
    worst = 0
    for name in names:
        description, plan, retry = LAYOUTS[name]
        result = await run_rollout(
            plan(),
            layout=name,
            pods=args.pods,
            rate=args.rate,
            scale=args.time_scale,
            steady_seconds=args.steady,
            retry_refused=retry,
            keepalive=not args.no_keepalive,
        )
        print(report(result, description), flush=True)
        if name == "native":
            worst = max(worst, result.failed)
    return 1 if worst else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pods", type=int, default=5)
    parser.add_argument("--rate", type=float, default=100.0, help="requests per second")
    parser.add_argument("--time-scale", type=float, default=0.1)
    parser.add_argument("--steady", type=float, default=5.0, help="seconds of steady load before the rollout")
    parser.add_argument("--layout", choices=[*LAYOUTS, "all"], default="all")
    parser.add_argument(
        "--no-keepalive", action="store_true", help="a new connection per request (default: keep-alive)"
    )
    args = parser.parse_args(argv)
    if shutil.which("node") is None:
        print("node is not installed: the pods' app is a Node server", file=sys.stderr)
        return 2
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
