"""Deployment files, checked offline: docker-compose.yml, the Dockerfile and deploy/k8s.

No Docker and no cluster are needed. The Kubernetes manifests are validated against the official
JSON schemas shipped in the `kubernetes-validate` wheel (strict: unknown fields are errors), and
cross-checked against the code so they cannot drift from it: every variable is a field of
`adapters.settings.Settings` (or a Temporal SDK variable), the probes use the configured
HEALTH_PORT, the grace period exceeds the worker's drain time, the user is the image's.
"""

from __future__ import annotations

import copy
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from pydantic import SecretStr

from adapters.mcp_config import configured_servers
from executor.cli import parser
from adapters.settings import Settings
from executor.worker import GRACEFUL_SHUTDOWN

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"

# The release the manifests deploy: one worker Deployment per version (docs/upgrades.md section 2).
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
IMAGE = f"dago-node-executor:{VERSION}"
WORKER = f"dago-node-executor-worker-{VERSION.replace('.', '-')}"
DEPLOYMENT_NAMES = {"worker": WORKER, "ingress": "dago-node-executor-ingress"}
VERSION_LABEL = "app.kubernetes.io/version"
# deploy/README.md's command that writes the next version's worker Deployment from this one.
NEXT_VERSION = "0.2.0"
RENDER_NEXT = r"sed -e 's/0-1-0/0-2-0/g' -e 's/0\.1\.0/0.2.0/g' deploy/k8s/worker.yaml"
SETTINGS_VARS = {name.upper() for name in Settings.model_fields}
SECRET_VARS = {name.upper() for name, field in Settings.model_fields.items() if field.annotation is SecretStr}
# Process-level variables a Deployment may set besides the application's own.
PROCESS_VARS = {"HOME"}
# Oldest Kubernetes minor we claim to support, and the newest the installed schemas know.
K8S_VERSIONS = ["1.27", kubernetes_validate.latest_version()]


def known_variable(name: str) -> bool:
    return name in SETTINGS_VARS or name.startswith("TEMPORAL_")


# --------------------------------------------------------------------------- docker compose


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(doc, dict) and isinstance(doc.get("services"), dict)
    return doc


def _seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, f"bad duration {duration!r}"
    return sum(float(n) * units[u] for n, u in parts)


def test_compose_has_the_stack(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"redis", "postgres", "temporal", "temporal-ui", "worker", "ingress"} <= set(services)
    long_running = {name for name, svc in services.items() if svc.get("restart") != "no"}
    assert {"redis", "postgres", "temporal", "temporal-ui", "worker", "ingress"} <= long_running

    # What others wait for reports its health.
    for name in ("redis", "postgres", "temporal"):
        test = services[name].get("healthcheck", {}).get("test")
        assert isinstance(test, list) and test[0] in ("CMD", "CMD-SHELL") and len(test) > 1, name

    # Every dependency waits on a condition, and service_healthy only on services with a healthcheck.
    for name, svc in services.items():
        depends = svc.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on needs conditions, not a list"
        for target, spec in depends.items():
            assert target in services, f"{name} depends on unknown {target}"
            condition = spec.get("condition")
            assert condition in ("service_healthy", "service_started", "service_completed_successfully"), name
            if condition == "service_healthy":
                assert "healthcheck" in services[target], f"{name} waits for {target}, which has no healthcheck"

    # Each long-running service either reports health or waits for what it needs to be healthy.
    for name in long_running:
        svc = services[name]
        waits = {t for t, s in svc.get("depends_on", {}).items() if s.get("condition") == "service_healthy"}
        assert "healthcheck" in svc or waits, f"{name}: neither a healthcheck nor healthy dependencies"

    assert services["temporal"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["temporal-ui"]["depends_on"]["temporal"]["condition"] == "service_healthy"
    for name in ("worker", "ingress"):
        depends = services[name]["depends_on"]
        assert depends["redis"]["condition"] == "service_healthy", name
        assert depends["temporal"]["condition"] == "service_healthy", name


def test_compose_worker_and_ingress_build_the_image(compose: dict[str, Any]) -> None:
    services = compose["services"]
    commands = set()
    for name in ("worker", "ingress"):
        svc = services[name]
        build = svc["build"]
        context, dockerfile = (build, "Dockerfile") if isinstance(build, str) else (build.get("context", "."), build.get("dockerfile", "Dockerfile"))
        assert (ROOT / context / dockerfile).resolve() == DOCKERFILE.resolve(), name
        assert svc["command"] == [name], name
        assert parser().parse_args(svc["command"]).command == name
        commands.add(svc["command"][0])
        env = svc["environment"]
        assert isinstance(env, dict) and env, name
        unknown = {key for key in env if not known_variable(key)}
        assert not unknown, f"{name}: variables the executor does not read: {sorted(unknown)}"
        assert env["REDIS_ADDR"] == "redis:6379" and env["TEMPORAL_ADDRESS"] == "temporal:7233", name
    assert commands == {"worker", "ingress"}
    # The worker drains for GRACEFUL_SHUTDOWN on SIGTERM: compose must wait longer than that.
    assert _seconds(services["worker"]["stop_grace_period"]) > GRACEFUL_SHUTDOWN.total_seconds()
    assert services["ingress"]["environment"].get("WORKER_ID")


def _docker_compose_available() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def test_compose_config_with_docker() -> None:
    if not _docker_compose_available():
        pytest.skip("`docker compose version` fails here: docker compose config not run")
    result = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr


def test_dockerfile_matches_the_package() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r'^ENTRYPOINT \["dago-executor"\]$', text, re.M)
    assert 'dago-executor = "executor.cli:run"' in (ROOT / "pyproject.toml").read_text()
    assert re.search(r"^STOPSIGNAL SIGTERM$", text, re.M)
    assert re.search(r"^USER executor$", text, re.M)
    assert dockerfile_uid() == 10001
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests", "bench"}
    copied = set(re.findall(r"^COPY (\w+) \./\1$", text, re.M))
    assert packages <= copied, f"the image lacks packages: {sorted(packages - copied)}"


def dockerfile_uid() -> int:
    match = re.search(r"useradd .*--uid (\d+) executor", DOCKERFILE.read_text())
    assert match, "the Dockerfile no longer creates the executor user with a fixed uid"
    return int(match.group(1))


# --------------------------------------------------------------------------- Kubernetes


def _kustomization() -> dict[str, Any]:
    return yaml.safe_load((K8S / "kustomization.yaml").read_text())


def _load_manifests() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for resource in _kustomization()["resources"]:
        for doc in yaml.safe_load_all((K8S / resource).read_text()):
            if doc is not None:
                docs.append((resource, doc))
    return docs


@pytest.fixture(scope="module")
def manifests() -> list[tuple[str, dict[str, Any]]]:
    return _load_manifests()


def _by_kind(manifests: list[tuple[str, dict[str, Any]]], kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for _, doc in manifests if doc["kind"] == kind}


@pytest.fixture(scope="module")
def configmap(manifests: list[tuple[str, dict[str, Any]]]) -> dict[str, str]:
    maps = _by_kind(manifests, "ConfigMap")
    assert list(maps) == ["dago-node-executor-config"]
    return maps["dago-node-executor-config"]["data"]


@pytest.fixture(scope="module")
def deployments(manifests: list[tuple[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    found = _by_kind(manifests, "Deployment")
    assert set(found) == set(DEPLOYMENT_NAMES.values())
    return found


def test_kustomization_lists_every_manifest_and_no_namespace(manifests: list[tuple[str, dict[str, Any]]]) -> None:
    kustomization = _kustomization()
    assert kustomization["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert kustomization["kind"] == "Kustomization"
    on_disk = {p.name for p in K8S.iterdir() if p.suffix in (".yaml", ".yml")} - {"kustomization.yaml"}
    assert sorted(kustomization["resources"]) == sorted(on_disk)
    assert "namespace" not in kustomization
    kinds = sorted(doc["kind"] for _, doc in manifests)
    assert kinds == ["ConfigMap", "Deployment", "Deployment", "PodDisruptionBudget", "PodDisruptionBudget", "Secret", "Secret"]
    for resource, doc in manifests:
        assert "namespace" not in doc["metadata"], f"{resource}: {doc['kind']} names a namespace"
        assert doc["kind"] != "Namespace"


def _schema_errors(docs: list[tuple[str, dict[str, Any]]], version: str) -> list[str]:
    errors = []
    for resource, doc in docs:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(map(str, exc.path))
            errors.append(f"{resource}: {doc['kind']}/{doc['metadata']['name']}: {where}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            errors.append(f"{resource}: {exc.message}")
    return errors


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_manifests_validate_against_kubernetes_schemas(manifests: list[tuple[str, dict[str, Any]]], version: str) -> None:
    assert len(manifests) == 7
    errors = _schema_errors(manifests, version)
    if errors:
        pytest.fail(f"invalid for Kubernetes {version}:\n" + "\n".join(errors), pytrace=False)


def test_schema_validation_rejects_broken_manifests(deployments: dict[str, dict[str, Any]]) -> None:
    """The validator is not vacuous: a wrong type and a misspelt field are both caught."""
    version = K8S_VERSIONS[-1]
    good = deployments[WORKER]
    kubernetes_validate.validate(good, version, strict=True)

    wrong_type = copy.deepcopy(good)
    wrong_type["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(wrong_type, version, strict=True)

    misspelt = copy.deepcopy(good)
    container = misspelt["spec"]["template"]["spec"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(misspelt, version, strict=True)


def test_kubectl_kustomize_renders_the_same_valid_set(manifests: list[tuple[str, dict[str, Any]]]) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed: `kubectl kustomize` not run (the schema checks above still ran)")
    result = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    rendered = [doc for doc in yaml.safe_load_all(result.stdout) if doc is not None]
    key = lambda doc: (doc["kind"], doc["metadata"]["name"])  # noqa: E731
    assert sorted(map(key, rendered)) == sorted(key(doc) for _, doc in manifests)
    errors = _schema_errors([("kubectl kustomize", doc) for doc in rendered], K8S_VERSIONS[-1])
    if errors:
        pytest.fail("rendered manifests invalid:\n" + "\n".join(errors), pytrace=False)


def test_configmap_holds_known_non_secret_settings(configmap: dict[str, str]) -> None:
    assert configmap, "empty ConfigMap"
    unknown = sorted(key for key in configmap if not known_variable(key))
    assert not unknown, f"ConfigMap variables the executor does not read: {unknown}"
    assert not SECRET_VARS & set(configmap), "secrets belong in the Secret"
    required = {
        "TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "TEMPORAL_TASK_QUEUE", "REDIS_ADDR",
        "WORK_STREAMS", "LOG_LEVEL", "MCP_SERVERS", "HEALTH_PORT",
    }
    assert required <= set(configmap), sorted(required - set(configmap))
    assert all(isinstance(value, str) for value in configmap.values()), "ConfigMap values must be strings"
    assert configmap["HEALTH_PORT"] == "8081"


def test_secret_holds_the_secret_settings_as_placeholders(manifests: list[tuple[str, dict[str, Any]]]) -> None:
    secret = _by_kind(manifests, "Secret")["dago-node-executor-secrets"]
    data = secret["stringData"]
    assert {"LLM_API_KEY", "REDIS_PASS"} <= set(data)
    assert set(data) <= SECRET_VARS | {"TEMPORAL_API_KEY"}
    # Nothing real is committed: every value is an obvious placeholder.
    for key, value in data.items():
        assert value.startswith("REPLACE_WITH_"), f"{key} is not a placeholder"


def test_settings_accept_the_manifest_configuration(
    manifests: list[tuple[str, dict[str, Any]]], configmap: dict[str, str], tmp_path: Path
) -> None:
    """What a pod would see in its environment passes the executor's own validation."""
    secret = _by_kind(manifests, "Secret")["dago-node-executor-secrets"]["stringData"]
    env = {**configmap, **secret, "WORKER_ID": "dago-node-executor-worker-abc12"}
    settings = Settings.from_env(env)
    assert settings.health_port == int(configmap["HEALTH_PORT"])
    assert settings.temporal_address == configmap["TEMPORAL_ADDRESS"]
    assert settings.work_streams == [s.strip() for s in configmap["WORK_STREAMS"].split(",")]
    assert settings.llm_api_key.get_secret_value() == secret["LLM_API_KEY"]

    # The MCP file of the Secret is where MCP_CONFIG says the worker finds it, and it parses.
    mcp_path = Path(configmap["MCP_CONFIG"])
    mcp_secret = _by_kind(manifests, "Secret")["dago-node-executor-mcp"]
    assert mcp_path.name in mcp_secret["stringData"]
    local = tmp_path / mcp_path.name
    local.write_text(mcp_secret["stringData"][mcp_path.name])
    assert isinstance(configured_servers(settings.mcp_servers, str(local)), list)

    worker = _by_kind(manifests, "Deployment")[WORKER]["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in worker["volumes"]}
    mounts = {m["mountPath"]: m for m in worker["containers"][0]["volumeMounts"]}
    mount = mounts[str(mcp_path.parent)]
    assert volumes[mount["name"]]["secret"]["secretName"] == "dago-node-executor-mcp"


def _quantity(value: str | int | float, memory: bool) -> float:
    text = str(value)
    if memory:
        suffixes = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
        for suffix, factor in suffixes.items():
            if text.endswith(suffix):
                return float(text[: -len(suffix)]) * factor
        return float(text)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def _port(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    named = {p["name"]: p["containerPort"] for p in container.get("ports", []) if "name" in p}
    return named[port]


@pytest.mark.parametrize("component", ["worker", "ingress"])
def test_deployment(
    component: str,
    deployments: dict[str, dict[str, Any]],
    manifests: list[tuple[str, dict[str, Any]]],
    configmap: dict[str, str],
) -> None:
    deployment = deployments[DEPLOYMENT_NAMES[component]]
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    labels = spec["template"]["metadata"]["labels"]
    assert set(spec["selector"]) == {"matchLabels"}
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    assert labels["app.kubernetes.io/component"] == component
    if component == "worker":
        assert spec["replicas"] == 2
    else:
        assert spec["replicas"] in (1, 2)

    [container] = pod["containers"]
    assert container["image"] == IMAGE
    assert container["args"] == [component]
    assert parser().parse_args(container["args"]).command == component
    assert "command" not in container, "the image's ENTRYPOINT (dago-executor) must run"

    # Configuration: the ConfigMap and the Secret of this set, plus WORKER_ID from the pod name.
    refs = {(k, v["name"]) for source in container["envFrom"] for k, v in source.items()}
    assert refs == {("configMapRef", "dago-node-executor-config"), ("secretRef", "dago-node-executor-secrets")}
    assert {name for _, name in refs} <= set(_by_kind(manifests, "ConfigMap")) | set(_by_kind(manifests, "Secret"))
    env = {item["name"]: item for item in container["env"]}
    assert env["WORKER_ID"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    unknown = sorted(name for name in env if not known_variable(name) and name not in PROCESS_VARS)
    assert not unknown, f"variables the executor does not read: {unknown}"

    # Probes: /health (liveness, startup) and /ready (readiness) on HEALTH_PORT.
    health_port = int(configmap["HEALTH_PORT"])
    assert health_port in {p["containerPort"] for p in container["ports"]}
    expected = {"livenessProbe": "/health", "readinessProbe": "/ready", "startupProbe": "/health"}
    for probe_name in ("livenessProbe", "readinessProbe"):
        assert probe_name in container, probe_name
    for probe_name, path in expected.items():
        if probe_name not in container:
            continue
        probe = container[probe_name]["httpGet"]
        assert probe["path"] == path, probe_name
        assert _port(container, probe["port"]) == health_port, probe_name

    # SIGTERM: the worker drains in-flight activities for GRACEFUL_SHUTDOWN; the pod waits longer.
    grace = pod["terminationGracePeriodSeconds"]
    assert grace > GRACEFUL_SHUTDOWN.total_seconds()
    assert grace > 30

    # Resources: requests and limits for CPU and memory, requests within limits.
    resources = container["resources"]
    for kind in ("cpu", "memory"):
        request = _quantity(resources["requests"][kind], kind == "memory")
        limit = _quantity(resources["limits"][kind], kind == "memory")
        assert 0 < request <= limit, kind

    # Security: the image's non-root user, read-only root filesystem, /tmp an emptyDir.
    security = pod["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] == dockerfile_uid()
    container_security = container["securityContext"]
    assert container_security["readOnlyRootFilesystem"] is True
    assert container_security["allowPrivilegeEscalation"] is False
    assert container_security["capabilities"]["drop"] == ["ALL"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
    assert {m["name"] for m in container["volumeMounts"]} <= set(volumes)
    for volume in volumes.values():
        if "secret" in volume:
            assert volume["secret"]["secretName"] in _by_kind(manifests, "Secret")


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert set(selector) == {"matchLabels"}
    return selector["matchLabels"].items() <= labels.items()


def test_worker_disruption_budget(
    manifests: list[tuple[str, dict[str, Any]]], deployments: dict[str, dict[str, Any]]
) -> None:
    pods = {name: d["spec"]["template"]["metadata"]["labels"] for name, d in deployments.items()}
    budgets = _by_kind(manifests, "PodDisruptionBudget")
    for name, budget in budgets.items():
        selected = [deployment for deployment, labels in pods.items() if _selects(budget["spec"]["selector"], labels)]
        assert len(selected) == 1, f"{name} selects {selected}"
    worker_budgets = [
        b for b in budgets.values() if _selects(b["spec"]["selector"], pods[WORKER])
    ]
    assert len(worker_budgets) == 1
    spec = worker_budgets[0]["spec"]
    replicas = deployments[WORKER]["spec"]["replicas"]
    # Protective, yet a node drain can always proceed one pod at a time.
    if "maxUnavailable" in spec:
        assert 1 <= spec["maxUnavailable"] < replicas
    else:
        assert 1 <= spec["minAvailable"] < replicas


# --------------------------------------------------------------------------- one Deployment per worker version


def _worker_version(deployment: dict[str, Any]) -> str:
    """The one version a worker Deployment runs: its name, its selector's and pods' version label,
    WORKER_BUILD_ID and the image tag must all say it (docs/upgrades.md section 2)."""
    spec = deployment["spec"]
    version = deployment["metadata"]["labels"][VERSION_LABEL]
    assert deployment["metadata"]["name"] == f"dago-node-executor-worker-{version.replace('.', '-')}"
    assert spec["selector"]["matchLabels"][VERSION_LABEL] == version, "the selector must pick this version's pods only"
    assert spec["template"]["metadata"]["labels"][VERSION_LABEL] == version
    [container] = spec["template"]["spec"]["containers"]
    env = {item["name"]: item for item in container["env"]}
    assert env["WORKER_BUILD_ID"] == {"name": "WORKER_BUILD_ID", "value": version}, "the build id must be pinned, not derived"
    assert container["image"].rsplit(":", 1)[1] == version
    return version


def test_the_worker_deployment_is_one_version_so_the_next_can_run_beside_it(
    deployments: dict[str, dict[str, Any]], manifests: list[tuple[str, dict[str, Any]]], configmap: dict[str, str]
) -> None:
    current = deployments[WORKER]
    assert _worker_version(current) == VERSION  # the release's own version: bumped with the package
    assert "WORKER_BUILD_ID" not in configmap, "the ConfigMap is shared by every version: the build id belongs to a Deployment"
    build = Settings.from_env({"WORKER_BUILD_ID": VERSION})
    from executor.deployment import build_id

    assert build_id(build) == VERSION

    # deploy/README.md's command writes the next version's Deployment: it coexists with this one.
    assert RENDER_NEXT in (ROOT / "deploy" / "README.md").read_text()
    rendered = subprocess.run(shlex.split(RENDER_NEXT), capture_output=True, text=True, check=True, timeout=30, cwd=ROOT).stdout
    [following] = [doc for doc in yaml.safe_load_all(rendered) if doc is not None]
    assert _worker_version(following) == NEXT_VERSION
    assert following["metadata"]["name"] != current["metadata"]["name"]
    pods = {name: doc["spec"]["template"]["metadata"]["labels"] for name, doc in (("current", current), ("next", following))}
    assert not _selects(current["spec"]["selector"], pods["next"]) and not _selects(following["spec"]["selector"], pods["current"])
    assert _schema_errors([("rendered next version", following)], K8S_VERSIONS[-1]) == []
    # One budget covers the workers of every version (evictions stay one pod at a time during a rollout).
    [worker_budget] = [b for b in _by_kind(manifests, "PodDisruptionBudget").values() if _selects(b["spec"]["selector"], pods["current"])]
    assert _selects(worker_budget["spec"]["selector"], pods["next"])


def _interpolated(value: str) -> str:
    """A compose value as `docker compose` resolves it with nothing set in the shell: `${VAR:-default}` -> default."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", value)


def test_compose_workers_keep_one_version_across_rebuilds(compose: dict[str, Any], tmp_path: Path) -> None:
    """`docker compose up --build` replaces the worker in place: with the default build id (a hash
    of the source) an edit would make a new version nobody makes current, and every node would wait.
    Compose pins one build id instead (as `make run` does), so a rebuilt worker serves the nodes."""
    from executor import deployment

    env = {key: _interpolated(str(value)) for key, value in compose["services"]["worker"]["environment"].items()}
    settings = Settings.from_env(env)
    assert settings.worker_versioning, "compose keeps versioning on (a deploy can still be rolled out by hand)"
    assert settings.worker_build_id, "compose must pin WORKER_BUILD_ID: the default changes with every edit"
    # The build id stays the same when the source changes (the default would not).
    sources = tmp_path / "src"
    for package in deployment.SOURCE_PACKAGES:
        shutil.copytree(ROOT / package, sources / package, ignore=shutil.ignore_patterns("__pycache__"))
    before = deployment.default_build_id(sources)
    (sources / "workflows" / "node.py").write_text((sources / "workflows" / "node.py").read_text() + "\n# an edit\n")
    assert deployment.default_build_id(sources) != before
    assert deployment.build_id(settings) == settings.worker_build_id
    assert "WORKER_BUILD_ID" in COMPOSE.read_text().split("worker:", 1)[1].split("ingress:", 1)[0], "explained beside the worker"
