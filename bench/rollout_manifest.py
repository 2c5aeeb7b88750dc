"""What a rolling update of the shipped Deployment does, read from its YAML (for ``bench/rollout.py``).

The simulator replays the kubelet's sequence with the values the manifest sets (where the sidecar sits,
its probes, the app's preStop, the grace period) and the sidecar's own settings from the ConfigMap, so
the documented budget and the measured behaviour come from one file and cannot drift apart. Anything
the simulator would not know how to replay (another kind of hook, a probe on another port) is an error
here, not something silently skipped.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from sidecar.core.durations import parse_duration

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "kubernetes"
NATIVE = K8S / "deployment.yaml"
PRE_129 = K8S / "pre-1.29" / "deployment.yaml"
CONFIG_MAP = K8S / "configmap.yaml"

# Ports the manifests use inside the pod (the simulator gives each pod free loopback ports instead).
APP_PORT = 3000
GATEWAY_PORT = 8080
HEALTH_PORT = 9797
ADMIN_PORT = 9798

_SLEEP = re.compile(r"(?:^|[;&|\s])sleep\s+(\d+(?:\.\d+)?)\s*(?:$|[;&|])")
_DRAIN = re.compile(r"http://127\.0\.0\.1:(\d+)/drain\b")
_UNDRAIN = re.compile(r"http://127\.0\.0\.1:(\d+)/undrain\b")


@dataclass(frozen=True)
class Probe:
    """An httpGet probe: where, how often, and how many results in a row flip it."""

    path: str
    port: int
    period: float
    timeout: float
    failure_threshold: int
    success_threshold: int
    initial_delay: float = 0.0


@dataclass(frozen=True)
class PreStop:
    """The app's preStop hook as the simulator replays it: an optional drain call, a sleep, an undrain."""

    sleep: float
    drain_port: int | None  # the sidecar's admin port the hook POSTs /drain to, if it does
    undrains: bool = False  # it POSTs /undrain after the sleep (for a restart of the app alone)


@dataclass(frozen=True)
class PodPlan:
    """Everything about one pod's start and stop that the rollout depends on."""

    source: str
    native_sidecar: bool  # sidecar in initContainers with restartPolicy: Always
    grace: float  # terminationGracePeriodSeconds
    startup: Probe | None  # the sidecar's startupProbe (the app starts once it passes)
    sidecar_post_start_waits: bool  # pre-1.29: a postStart hook holds the app until /livez answers
    readiness: Probe  # the sidecar's readinessProbe
    app_pre_stop: PreStop | None
    max_surge: int
    max_unavailable: int
    sidecar_config: dict[str, Any] = field(default_factory=dict)  # sidecar.yaml from the ConfigMap

    def scaled(self, factor: float) -> PodPlan:
        """Every duration multiplied by ``factor`` (probe timeouts kept at 1 s or more: a loaded machine)."""

        def probe(p: Probe | None) -> Probe | None:
            if p is None:
                return None
            return replace(
                p,
                period=p.period * factor,
                timeout=max(1.0, p.timeout * factor),
                initial_delay=p.initial_delay * factor,
            )

        readiness = probe(self.readiness)
        assert readiness is not None
        pre_stop = self.app_pre_stop
        return replace(
            self,
            grace=self.grace * factor,
            startup=probe(self.startup),
            readiness=readiness,
            app_pre_stop=None if pre_stop is None else replace(pre_stop, sleep=pre_stop.sleep * factor),
            sidecar_config=scaled_sidecar_config(self.sidecar_config, factor),
        )

    def without_hooks(self) -> PodPlan:
        """The old two-container example: no preStop, no postStart, and the sidecar before this change."""
        config = copy.deepcopy(self.sidecar_config)
        config.setdefault("gateway", {})["exit_on_zero_active"] = False
        return replace(
            self,
            source=self.source + " without hooks",
            app_pre_stop=None,
            sidecar_post_start_waits=False,
            sidecar_config=config,
        )


def load_plan(deployment: Path = NATIVE, config_map: Path = CONFIG_MAP) -> PodPlan:
    """Read a Deployment (native or pre-1.29 layout) and the sidecar's ConfigMap."""
    obj = _one(deployment, "Deployment")
    pod = obj["spec"]["template"]["spec"]
    rolling = obj["spec"].get("strategy", {}).get("rollingUpdate", {})
    init = {c["name"]: c for c in pod.get("initContainers", [])}
    main = {c["name"]: c for c in pod["containers"]}
    if "sidecar" in init:
        sidecar, native = init["sidecar"], True
        if sidecar.get("restartPolicy") != "Always":
            raise ValueError(f"{deployment}: the sidecar init container needs restartPolicy: Always")
    else:
        sidecar, native = main["sidecar"], False
    app = main["app"]
    post_start = sidecar.get("lifecycle", {}).get("postStart")
    if post_start is not None and "/livez" not in " ".join(post_start.get("exec", {}).get("command", [])):
        raise ValueError(f"{deployment}: the simulator replays only a postStart that waits for /livez")
    config_text = _one(config_map, "ConfigMap")["data"]["sidecar.yaml"]
    return PodPlan(
        source=str(deployment.relative_to(ROOT)),
        native_sidecar=native,
        grace=float(pod.get("terminationGracePeriodSeconds", 30)),
        startup=_probe(sidecar.get("startupProbe")),
        sidecar_post_start_waits=post_start is not None,
        readiness=_required_probe(sidecar.get("readinessProbe"), "the sidecar's readinessProbe"),
        app_pre_stop=pre_stop(app),
        max_surge=int(rolling.get("maxSurge", 1)),
        max_unavailable=int(rolling.get("maxUnavailable", 0)),
        sidecar_config=yaml.safe_load(config_text) or {},
    )


def pre_stop(container: dict[str, Any]) -> PreStop | None:
    """The container's preStop as (drain call, sleep); an error for a hook the simulator cannot replay."""
    hook = container.get("lifecycle", {}).get("preStop")
    if hook is None:
        return None
    if "sleep" in hook:  # Kubernetes 1.30+ sleep action
        return PreStop(float(hook["sleep"]["seconds"]), None)
    command = hook.get("exec", {}).get("command")
    if not command:
        raise ValueError(f"preStop of {container['name']}: only exec and sleep hooks are replayed")
    if command[0] == "sleep" and len(command) == 2:
        return PreStop(float(command[1]), None)
    if command[:2] == ["sh", "-c"] and len(command) == 3:
        script = command[2]
        sleep = _SLEEP.search(script)
        if sleep is None:
            raise ValueError(f"preStop of {container['name']}: no sleep in {script!r}")
        drain, undrain = _DRAIN.search(script), _UNDRAIN.search(script)
        if undrain is not None and (drain is None or undrain.start() < sleep.start()):
            raise ValueError(f"preStop of {container['name']}: /undrain only after /drain and the sleep")
        return PreStop(float(sleep[1]), int(drain[1]) if drain else None, undrain is not None)
    raise ValueError(f"preStop of {container['name']}: cannot replay {command!r}")


def scaled_sidecar_config(config: dict[str, Any], factor: float) -> dict[str, Any]:
    """The sidecar's durations that take part in a rollout, multiplied by ``factor``."""
    out = copy.deepcopy(config)
    for key in ("shutdown_timeout",):
        if key in out:
            out[key] = parse_duration(out[key]) * factor
    gateway = out.get("gateway") or {}
    for key in ("drain_period", "grace_period"):
        if key in gateway:
            gateway[key] = parse_duration(gateway[key]) * factor
    for check in out.get("checks") or []:
        if "interval" in check:
            check["interval"] = parse_duration(check["interval"]) * factor
        if "timeout" in check:  # at least 0.5 s (a loaded machine), never above the interval
            timeout = max(0.5, parse_duration(check["timeout"]) * factor)
            check["timeout"] = min(timeout, check.get("interval", timeout))
    return out


def _probe(spec: dict[str, Any] | None) -> Probe | None:
    if spec is None:
        return None
    get = spec.get("httpGet")
    if get is None or not isinstance(get.get("port"), int):
        raise ValueError(f"only httpGet probes on a port number are replayed: {spec}")
    return Probe(
        path=get["path"],
        port=get["port"],
        period=float(spec.get("periodSeconds", 10)),
        timeout=float(spec.get("timeoutSeconds", 1)),
        failure_threshold=int(spec.get("failureThreshold", 3)),
        success_threshold=int(spec.get("successThreshold", 1)),
        initial_delay=float(spec.get("initialDelaySeconds", 0)),
    )


def _required_probe(spec: dict[str, Any] | None, what: str) -> Probe:
    probe = _probe(spec)
    if probe is None:
        raise ValueError(f"{what} is missing")
    return probe


def _one(path: Path, kind: str) -> dict[str, Any]:
    found = [d for d in yaml.safe_load_all(path.read_text()) if d and d.get("kind") == kind]
    if len(found) != 1:
        raise ValueError(f"{path}: expected one {kind}, found {len(found)}")
    result: dict[str, Any] = found[0]
    return result
