"""The deployment examples are valid and agree with the sidecar: Kubernetes objects against the API
schemas (kubernetes-validate), the prometheus-operator objects against their CRD fields, the
PrometheusRule generated from alerts/, and the Compose stack's structure and files.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import pytest
import yaml

from bench.rollout_manifest import NATIVE, PRE_129, load_plan
from sidecar.config import Settings, load_settings
from sidecar.serving.addresses import parse_listen
from tests.dockerfile import ROOT
from tests.operator_schemas import SCHEMAS

pytestmark = pytest.mark.timeout(60)
K8S = ROOT / "deploy" / "kubernetes"
COMPOSE = ROOT / "deploy" / "compose"
VERSIONS = ["1.29.0", "1.33.0", "1.37.0"]
CORE_KINDS = {"Deployment", "Service", "Secret", "ConfigMap"}


def kubernetes_validate() -> ModuleType:
    try:
        import kubernetes_validate as module
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("kubernetes-validate is missing: pip install -e '.[dev]' installs it")
        pytest.skip("kubernetes-validate is not installed (pip install kubernetes-validate)")
    return module


def manifests() -> list[tuple[str, dict[str, Any]]]:
    """(file name, object) for every Kubernetes object in deploy/kubernetes."""
    found = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                found.append((path.name, document))
    return found


def by_kind(kind: str) -> dict[str, Any]:
    (obj,) = [o for _, o in manifests() if o["kind"] == kind]
    return obj


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_prometheusrule", K8S / "build_prometheusrule.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- Kubernetes ---------------------------------------------------------------------------------------------


def test_every_manifest_is_a_known_kind() -> None:
    kinds = {o["kind"] for _, o in manifests()}
    assert kinds == CORE_KINDS | {"ServiceMonitor"}, kinds


@pytest.mark.parametrize("version", VERSIONS)
def test_core_objects_validate_against_the_kubernetes_schema(version: str) -> None:
    kv = kubernetes_validate()
    checked = 0
    for name, obj in manifests():
        if obj["kind"] not in CORE_KINDS:
            continue
        try:
            kv.validate(obj, version, strict=True)
        except kv.ValidationError as exc:
            pytest.fail(f"{name} ({obj['kind']}) is invalid for Kubernetes {version}: {exc}")
        checked += 1
    assert checked == len(CORE_KINDS)


def test_kustomization_lists_existing_files() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    for resource in kustomization["resources"]:
        assert (K8S / resource).is_file(), resource
    assert "secret.example.yaml" not in kustomization["resources"], "real secrets come from a secret store"


def test_service_monitor_matches_its_crd_fields() -> None:
    jsonschema.validate(by_kind("ServiceMonitor"), SCHEMAS["ServiceMonitor"])


def containers(deployment: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Every container of the pod by name, the native sidecar (an init container) included."""
    spec = (deployment or by_kind("Deployment"))["spec"]["template"]["spec"]
    return {c["name"]: c for c in spec.get("initContainers", []) + spec["containers"]}


@pytest.mark.parametrize("layout", ["native", "pre-1.29"])
def test_probes_use_the_sidecar_health_port_and_paths(layout: str) -> None:
    sidecar = containers(DEPLOYMENTS[layout]())["sidecar"]
    health_port = parse_listen(Settings(default_checks=False).listen)[1]
    assert sidecar["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": health_port}
    assert sidecar["livenessProbe"]["httpGet"] == {"path": "/livez", "port": health_port}
    ports = {p["name"]: p["containerPort"] for p in sidecar["ports"]}
    assert ports["metrics"] == health_port
    from sidecar.gateway.settings import GatewaySettings

    assert ports["http"] == parse_listen(GatewaySettings().listen)[1]


def test_pod_and_containers_are_locked_down() -> None:
    pod = by_kind("Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] >= 1000
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    for name, container in containers().items():
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True, name
        assert context["allowPrivilegeEscalation"] is False, name
        assert context["capabilities"]["drop"] == ["ALL"], name
        assert container["resources"]["requests"] and container["resources"]["limits"]["memory"], name
    mounts = {m["mountPath"] for m in containers()["sidecar"]["volumeMounts"]}
    assert "/var/lib/sidecar" in mounts, "a read-only root needs a writable state directory"


def pre_129_deployment() -> dict[str, Any]:
    (obj,) = [d for d in yaml.safe_load_all((K8S / "pre-1.29" / "deployment.yaml").read_text()) if d]
    assert obj["kind"] == "Deployment"
    return dict(obj)


DEPLOYMENTS = {"native": lambda: by_kind("Deployment"), "pre-1.29": pre_129_deployment}


def config_map_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Settings:
    (tmp_path / "sidecar.yaml").write_text(by_kind("ConfigMap")["data"]["sidecar.yaml"])
    monkeypatch.setenv("SIDECAR_UPSTREAM", "http://127.0.0.1:3000")
    return load_settings(tmp_path / "sidecar.yaml", environ={"SIDECAR_UPSTREAM": "http://127.0.0.1:3000"})


APP_SHUTDOWN = 5.0  # what the budget allows the app after SIGTERM (docs/deploy.md)


def test_the_sidecar_is_a_native_sidecar_started_first_and_stopped_last() -> None:
    pod = by_kind("Deployment")["spec"]["template"]["spec"]
    (sidecar,) = pod["initContainers"]
    assert sidecar["name"] == "sidecar" and sidecar["restartPolicy"] == "Always"
    health_port = parse_listen(Settings(default_checks=False).listen)[1]
    assert sidecar["startupProbe"]["httpGet"] == {"path": "/livez", "port": health_port}
    assert [c["name"] for c in pod["containers"]] == ["app"]


def test_the_app_prestop_drains_the_sidecar_and_outlasts_endpoint_withdrawal() -> None:
    plan = load_plan(NATIVE)
    assert plan.app_pre_stop is not None
    admin_port = parse_listen(Settings(default_checks=False).admin_listen)[1]
    assert plan.app_pre_stop.drain_port == admin_port, "preStop must POST /drain to the admin listener"
    assert plan.app_pre_stop.undrains, "a restart of the app container alone must not leave the pod drained"
    assert plan.app_pre_stop.sleep >= 5, "endpoint withdrawal takes seconds to reach every balancer"


def test_native_grace_period_covers_prestop_app_and_sidecar_shutdown(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    plan = load_plan(NATIVE)
    settings = config_map_settings(monkeypatch, tmp_path)
    assert plan.app_pre_stop is not None
    assert settings.gateway.exit_on_zero_active, "the sidecar is stopped after the app: exit at once"
    budget = plan.app_pre_stop.sleep + APP_SHUTDOWN + settings.shutdown_timeout
    assert plan.grace >= budget, (plan.grace, budget)


def test_pre_129_grace_period_covers_the_sidecar_drain_and_the_app_outlives_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    plan = load_plan(PRE_129)
    settings = config_map_settings(monkeypatch, tmp_path)
    gateway = settings.gateway
    assert not plan.native_sidecar and plan.sidecar_post_start_waits
    assert plan.app_pre_stop is not None
    # the sidecar is SIGTERMed at once; the app must still serve when the sidecar stops accepting
    assert plan.app_pre_stop.sleep >= gateway.drain_period + APP_SHUTDOWN
    sidecar_worst = gateway.drain_period + gateway.grace_period + settings.shutdown_timeout
    assert plan.grace >= max(sidecar_worst, plan.app_pre_stop.sleep + APP_SHUTDOWN)


def test_pre_129_layout_differs_from_the_native_one_only_in_placement_and_hooks() -> None:
    def comparable(container: dict[str, Any]) -> dict[str, Any]:
        ignored = ("restartPolicy", "startupProbe", "lifecycle")
        return {k: v for k, v in container.items() if k not in ignored}

    native, old = containers(), containers(pre_129_deployment())
    assert set(native) == set(old) == {"app", "sidecar"}
    for name in native:
        assert comparable(native[name]) == comparable(old[name]), name
    old_pod = pre_129_deployment()["spec"]["template"]["spec"]
    assert "initContainers" not in old_pod
    assert [c["name"] for c in old_pod["containers"]] == ["sidecar", "app"], "the sidecar starts first"
    native_pod = by_kind("Deployment")["spec"]["template"]["spec"]
    ignored_pod = ("initContainers", "containers", "terminationGracePeriodSeconds")
    assert {k: v for k, v in native_pod.items() if k not in ignored_pod} == {
        k: v for k, v in old_pod.items() if k not in ignored_pod
    }


@pytest.mark.parametrize("version", ["1.27.0", "1.28.0", *VERSIONS])
def test_pre_129_deployment_validates_against_the_kubernetes_schema(version: str) -> None:
    kv = kubernetes_validate()
    try:
        kv.validate(pre_129_deployment(), version, strict=True)
    except kv.ValidationError as exc:
        pytest.fail(f"pre-1.29/deployment.yaml is invalid for Kubernetes {version}: {exc}")


def test_deploy_doc_states_the_budget_the_manifests_set(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    text = (ROOT / "docs" / "deploy.md").read_text()
    native, old = load_plan(NATIVE), load_plan(PRE_129)
    assert native.app_pre_stop is not None and old.app_pre_stop is not None
    settings = config_map_settings(monkeypatch, tmp_path)
    for needle in (
        f"`terminationGracePeriodSeconds: {native.grace:g}`",
        f"`terminationGracePeriodSeconds: {old.grace:g}`",
        f"`sleep {native.app_pre_stop.sleep:g}`",
        f"`sleep {old.app_pre_stop.sleep:g}`",
        f"`drain_period` {settings.gateway.drain_period:g} s",
        f"`grace_period` {settings.gateway.grace_period:g} s",
        f"`shutdown_timeout` {settings.shutdown_timeout:g} s",
    ):
        assert needle in text, f"docs/deploy.md does not say {needle}"


def secret_keys() -> set[str]:
    return set(by_kind("Secret")["stringData"])


def test_secrets_come_from_the_secret_by_reference() -> None:
    wanted = {"DATABASE_URL", "REDIS_URL", "SENTRY_DSN"}
    refs: dict[str, str] = {}
    for env in containers()["sidecar"]["env"]:
        if "valueFrom" in env:
            ref = env["valueFrom"]["secretKeyRef"]
            assert ref["name"] == by_kind("Secret")["metadata"]["name"]
            assert ref["key"] in secret_keys(), ref
            refs[env["name"]] = ref["key"]
        else:
            assert not any(w in env["name"] for w in ("PASSWORD", "TOKEN", "DSN", "_URL")) or env["name"] in (
                "SIDECAR_UPSTREAM",
            ), f"{env['name']} should come from the Secret"
    assert wanted <= set(refs)


def test_config_map_and_environment_make_a_valid_configuration(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    text = by_kind("ConfigMap")["data"]["sidecar.yaml"]
    (tmp_path / "sidecar.yaml").write_text(text)
    env = dict(by_kind("Secret")["stringData"].items())
    for item in containers()["sidecar"]["env"]:
        if "valueFrom" in item:
            env[item["name"]] = env[item["valueFrom"]["secretKeyRef"]["key"]]
        else:
            env[item["name"]] = item["value"]
    for name, value in env.items():
        if name.startswith("SIDECAR_") and name != "SIDECAR_CONFIG":
            monkeypatch.setenv(name, value)
    settings = load_settings(tmp_path / "sidecar.yaml", environ=env)
    names = {c.name for c in settings.checks}
    assert {"database", "redis", "app"} <= names
    assert settings.metrics_auth is not None and settings.metrics_auth.bearer_token is not None


def test_service_and_service_monitor_point_at_the_pod() -> None:
    service = by_kind("Service")
    monitor = by_kind("ServiceMonitor")
    pod_labels = by_kind("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    port_numbers = {p["containerPort"] for c in containers().values() for p in c["ports"]}
    for port in service["spec"]["ports"]:
        # numbers: a named port on a native sidecar resolves only from Kubernetes 1.32 on
        assert port["targetPort"] in port_numbers, port
    for endpoint in monitor["spec"]["endpoints"]:  # the sidecar's job, and its exporter families again
        assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
        assert endpoint["path"] == "/metrics"
        assert endpoint["authorization"]["credentials"]["key"] in secret_keys()


# -- PrometheusRule from alerts/ ------------------------------------------------------------------------------


def test_prometheus_rule_from_the_repository_alerts_is_valid(tmp_path: Path) -> None:
    script = load_script()
    output = tmp_path / "prometheusrule.yaml"
    assert script.main(["-o", str(output)]) == 0
    rule = yaml.safe_load(output.read_text())
    jsonschema.validate(rule, SCHEMAS["PrometheusRule"])
    sources = script.rule_files(ROOT / "alerts")
    expected = sum(len(script.load_groups(p)) for p in sources)
    assert len(rule["spec"]["groups"]) == expected
    if sources and shutil.which("promtool"):
        rules_only = tmp_path / "rules.yml"
        rules_only.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
        done = subprocess.run(
            ["promtool", "check", "rules", str(rules_only)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr


RULES = """
groups:
  - name: sidecar-readiness
    rules:
      - alert: SidecarNotReady
        expr: sidecar_ready == 0
        for: 5m
        labels: {severity: page}
        annotations: {summary: "{{ $labels.instance }} is not ready"}
      - record: job:sidecar_ready:min
        expr: min by (job) (sidecar_ready)
"""


def test_generator_wraps_rule_files_and_skips_unit_tests(tmp_path: Path) -> None:
    script = load_script()
    (tmp_path / "readiness.yml").write_text(RULES)
    (tmp_path / "readiness_test.yml").write_text("rule_files: [readiness.yml]\ntests: []\n")
    (tmp_path / "checks.yaml").write_text(
        "groups:\n  - name: sidecar-checks\n    rules:\n      - alert: CheckDown\n        expr: sidecar_check_up == 0\n"
    )
    rule = script.build(tmp_path, namespace="monitoring", labels={"release": "prom"})
    jsonschema.validate(rule, SCHEMAS["PrometheusRule"])
    assert [g["name"] for g in rule["spec"]["groups"]] == ["sidecar-checks", "sidecar-readiness"]
    assert rule["metadata"] == {
        "name": "observability-sidecar",
        "labels": {"release": "prom"},
        "namespace": "monitoring",
    }
    text = script.render(rule, script.rule_files(tmp_path))
    assert "readiness_test.yml" not in text and yaml.safe_load(text) == rule


def test_generator_rejects_duplicate_groups_and_bad_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = load_script()
    (tmp_path / "a.yml").write_text(RULES)
    (tmp_path / "b.yml").write_text(RULES)
    assert script.main(["--alerts-dir", str(tmp_path)]) == 2
    assert "sidecar-readiness" in capsys.readouterr().err
    (tmp_path / "b.yml").write_text("groups: nope\n")
    assert script.main(["--alerts-dir", str(tmp_path)]) == 2
    assert "b.yml" in capsys.readouterr().err


def test_schema_catches_a_misspelt_field() -> None:
    monitor = by_kind("ServiceMonitor")
    broken = {
        **monitor,
        "spec": {**monitor["spec"], "endpoints": [{"port": "metrics", "scrapeTimout": "10s"}]},
    }
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, SCHEMAS["ServiceMonitor"])


# -- Compose ------------------------------------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    data = yaml.safe_load((COMPOSE / "compose.yaml").read_text())
    assert isinstance(data, dict)
    return data


def test_compose_has_the_whole_stack() -> None:
    assert set(compose()["services"]) == {"app", "postgres", "redis", "sidecar", "prometheus"}


def has_healthcheck(name: str, service: dict[str, Any]) -> bool:
    if "healthcheck" in service:
        return bool(service["healthcheck"].get("test"))
    if "build" in service:  # the image's own HEALTHCHECK
        dockerfile = (
            COMPOSE / service["build"]["context"] / service["build"].get("dockerfile", "Dockerfile")
        ).resolve()
        return "HEALTHCHECK" in dockerfile.read_text()
    return False


def test_compose_dependencies_wait_for_health_that_exists() -> None:
    services = compose()["services"]
    for name, service in services.items():
        for dependency, condition in (service.get("depends_on") or {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            assert condition["condition"] in (
                "service_started",
                "service_healthy",
                "service_completed_successfully",
            )
            if condition["condition"] == "service_healthy":
                assert has_healthcheck(dependency, services[dependency]), f"{dependency} has no healthcheck"


def test_compose_files_and_build_exist() -> None:
    services = compose()["services"]
    build = services["sidecar"]["build"]
    context = (COMPOSE / build["context"]).resolve()
    assert context == ROOT and (context / build["dockerfile"]).is_file()
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (COMPOSE / source).is_file(), f"{name} mounts missing {source}"
        for mapping in service.get("ports", []):
            host, _, container = str(mapping).rpartition(":")
            assert host.isdigit() and container.isdigit(), mapping


def test_compose_sidecar_configuration_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    sidecar = compose()["services"]["sidecar"]
    env = dict(sidecar["environment"])
    mount = next(v for v in sidecar["volumes"] if v.endswith(":/etc/sidecar/sidecar.yaml:ro"))
    for name, value in env.items():
        if name.startswith("SIDECAR_") and name != "SIDECAR_CONFIG":
            monkeypatch.setenv(name, value)
    settings = load_settings(COMPOSE / mount.split(":")[0], environ=env)
    assert {"database", "redis", "app"} <= {c.name for c in settings.checks}
    published = {int(str(p).split(":")[1]) for p in sidecar["ports"]}
    assert parse_listen(settings.listen)[1] in published


def test_prometheus_scrapes_the_sidecar_health_port() -> None:
    config = yaml.safe_load((COMPOSE / "prometheus.yml").read_text())
    port = parse_listen(Settings(default_checks=False).listen)[1]
    for job in config["scrape_configs"]:  # the sidecar's job, and its exporter families again
        assert job.get("metrics_path", "/metrics") == "/metrics"
        targets = [t for static in job["static_configs"] for t in static["targets"]]
        assert targets == [f"sidecar:{port}"]
    assert "sidecar" in compose()["services"]
    if shutil.which("promtool"):
        done = subprocess.run(
            ["promtool", "check", "config", "--syntax-only", str(COMPOSE / "prometheus.yml")],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr


def alert_job_names() -> set[str]:
    """The ``job`` values the repository's alert rules select (the scrape job's name)."""
    script = load_script()
    names: set[str] = set()
    for path in script.rule_files(ROOT / "alerts"):
        for group in script.load_groups(path):
            for rule in group["rules"]:
                names |= set(re.findall(r'job="([^"]+)"', str(rule.get("expr", ""))))
    return names or {"sidecar"}


def test_scrape_jobs_carry_the_job_name_the_alerts_select() -> None:
    (wanted,) = alert_job_names()
    endpoint = by_kind("ServiceMonitor")["spec"]["endpoints"][0]
    relabel = [r for r in endpoint.get("relabelings", []) if r.get("targetLabel") == "job"]
    assert relabel and relabel[-1]["replacement"] == wanted, (
        "the operator would name the job after the Service"
    )
    job = yaml.safe_load((COMPOSE / "prometheus.yml").read_text())["scrape_configs"][0]
    assert job["job_name"] == wanted


_OPERATOR_KEYS = {"sourceLabels": "source_labels", "targetLabel": "target_label"}


def test_exporter_families_job_is_the_same_in_compose_and_the_service_monitor() -> None:
    """Per-check ``instance`` for the mixins: one set of rules, written twice (the parity test runs it)."""
    (compose_job,) = [
        job
        for job in yaml.safe_load((COMPOSE / "prometheus.yml").read_text())["scrape_configs"]
        if job["job_name"] == "sidecar-exporters"
    ]
    (endpoint,) = [
        e
        for e in by_kind("ServiceMonitor")["spec"]["endpoints"]
        if any(r.get("replacement") == "sidecar-exporters" for r in e.get("relabelings", []))
    ]
    operator_rules = [
        {_OPERATOR_KEYS.get(key, key): value for key, value in rule.items()}
        for rule in endpoint["metricRelabelings"]
    ]
    assert operator_rules == compose_job["metric_relabel_configs"]
