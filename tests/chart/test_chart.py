"""The Helm chart (helm/xray-daemon), checked without a cluster.

The chart is linted and rendered by Helm's own engine (helm-python-sdk bundles Helm's Go SDK), for
the default values and for tests/chart/values-all.yaml, which sets every value. The rendered
manifests are validated against Kubernetes 1.32's OpenAPI schemas by kubernetes-validate --strict,
and the ServiceMonitor, a CRD kubernetes-validate has no schema for, against
servicemonitor.schema.json, a strict subset of prometheus-operator's CRD schema. The values files
are checked against values.schema.json with check-jsonschema, and everything is linted with
yamllint. The remaining tests read the rendered objects and check what the chart decides: ports,
probes, security, environment, ConfigMap, and the settings it refuses.

Run: <venv>/bin/python -m pytest tests/chart -q, with tests/chart/requirements.txt installed in
that venv (the command-line tools are taken from beside the running Python, not from PATH).
"""

import functools
import json
import re
import subprocess
import sys
from pathlib import Path

import helm_python as helm
import pytest
import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CHART = ROOT / "helm" / "xray-daemon"
VALUES_ALL = HERE / "values-all.yaml"
RELEASE, NAMESPACE = "xray", "observability"
KUBE_VERSION = "1.32.0"

# What each daemon value must become: the variables the daemon reads (README, "Configuration").
DAEMON_ENV = {
    "udpAddress": "XRAY_DAEMON_UDP_ADDRESS",
    "tcpAddress": "XRAY_DAEMON_TCP_ADDRESS",
    "bufferMemoryMB": "XRAY_DAEMON_BUFFER_MEMORY_MB",
    "localMode": "XRAY_DAEMON_LOCAL_MODE",
    "logLevel": "XRAY_DAEMON_LOG_LEVEL",
    "logFormat": "XRAY_DAEMON_LOG_FORMAT",
    "resourceArn": "XRAY_DAEMON_RESOURCE_ARN",
    "endpoint": "XRAY_DAEMON_ENDPOINT",
    "concurrency": "XRAY_DAEMON_CONCURRENCY",
    "uploadTimeout": "XRAY_DAEMON_UPLOAD_TIMEOUT",
    "shutdownTimeout": "XRAY_DAEMON_SHUTDOWN_TIMEOUT",
    "receiveBufferKB": "XRAY_DAEMON_RECEIVE_BUFFER_KB",
    "telemetry": "XRAY_DAEMON_TELEMETRY",
    "proxyAddress": "XRAY_DAEMON_PROXY_ADDRESS",
    "noVerifySSL": "XRAY_DAEMON_NO_VERIFY_SSL",
    "proxyAllowAll": "XRAY_DAEMON_PROXY_ALLOW_ALL",
    "proxyTimeout": "XRAY_DAEMON_PROXY_TIMEOUT",
    "proxyClientTimeout": "XRAY_DAEMON_PROXY_CLIENT_TIMEOUT",
    "proxyMaxBodyKB": "XRAY_DAEMON_PROXY_MAX_BODY_KB",
    "maxConnections": "XRAY_DAEMON_MAX_CONNECTIONS",
}
# The variables the chart sets from values outside `daemon:` (region, roleArn, otlp, spool).
CHART_ENV = {
    "XRAY_DAEMON_REGION", "XRAY_DAEMON_ROLE_ARN", "XRAY_DAEMON_OTLP_ADDRESS", "XRAY_DAEMON_OTLP_GRPC_ADDRESS",
    "XRAY_DAEMON_SPOOL_DIR", "XRAY_DAEMON_SPOOL_MAX_MB", "XRAY_DAEMON_SPOOL_REPLAY_RATE_KB", "XRAY_DAEMON_SPAN_UPLOAD",
    "XRAY_DAEMON_INDEXED_ATTRIBUTES", "XRAY_DAEMON_INDEX_ALL_ATTRIBUTES",
}
# Objects of the Prometheus Operator's CRDs: kubernetes-validate has no schema for them, so each is
# checked against a strict subset of its CRD's schema here (<kind>.schema.json).
CRD_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}


def tool(name: str) -> str:
    path = Path(sys.executable).parent / name
    assert path.exists(), f"{name} is not installed beside {sys.executable}: pip install -r tests/chart/requirements.txt"
    return str(path)


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=120)


def load_yaml(path: Path):
    return yaml.safe_load(path.read_text())


@functools.cache
def chart() -> helm.Chart:
    """The chart, loaded once per run (Helm's own loader: Chart.yaml, templates, schema)."""
    return helm.Chart.load(str(CHART))


def render(values: dict | None = None) -> dict[str, str]:
    return chart().render(values or {}, name=RELEASE, namespace=NAMESPACE)


def set_values(*pairs: str) -> dict:
    """Values as `--set a.b=c` would give them."""
    return helm.parse_set_string(",".join(pairs))


class Rendered:
    """One rendering of the chart: its manifests, NOTES.txt, and the objects by kind."""

    def __init__(self, values: dict | None = None):
        manifests = render(values)
        self.notes = next(text for path, text in manifests.items() if path.endswith("NOTES.txt"))
        self.sources = {path: text for path, text in manifests.items() if not path.endswith("NOTES.txt") and text.strip()}
        self.objects = [doc for text in self.sources.values() for doc in yaml.safe_load_all(text) if doc]

    def kinds(self) -> list[str]:
        return sorted(o["kind"] for o in self.objects)

    def one(self, kind: str) -> dict:
        found = [o for o in self.objects if o["kind"] == kind]
        assert len(found) == 1, f"expected one {kind}, got {self.kinds()}"
        return found[0]

    def pod(self) -> dict:
        return self.one("DaemonSet")["spec"]["template"]

    def container(self) -> dict:
        (container,) = self.pod()["spec"]["containers"]
        return container

    def env(self) -> dict[str, str]:
        env = self.container().get("env", [])
        names = [e["name"] for e in env]
        assert len(names) == len(set(names)), f"duplicate env vars: {names}"
        return {e["name"]: e.get("value") for e in env}

    def ports(self) -> dict[str, dict]:
        return {p["name"]: p for p in self.container()["ports"]}

    def write(self, path: Path, kinds_out: set[str] = frozenset()) -> Path:
        """Helm's output as `helm template` prints it, without the templates of `kinds_out`."""
        kept = [
            f"---\n# Source: {source}\n{text.strip()}\n"
            for source, text in sorted(self.sources.items())
            if not {doc["kind"] for doc in yaml.safe_load_all(text) if doc} <= kinds_out
        ]
        path.write_text("".join(kept))
        return path


def write_documents(path: Path, documents: list[dict]) -> Path:
    path.write_text("".join("---\n" + yaml.safe_dump(d, sort_keys=False) for d in documents))
    return path


def leaves(tree: dict, stop=lambda path: False, parts=()):
    """(key path, value) of each leaf of a values tree; a key for which stop(path) holds is a leaf."""
    for key, value in tree.items():
        path = (*parts, key)
        if isinstance(value, dict) and value and not stop(".".join(path)):
            yield from leaves(value, stop, path)
        else:
            yield path, value


@pytest.fixture(scope="module")
def default() -> Rendered:
    return Rendered()


@pytest.fixture(scope="module")
def full() -> Rendered:
    return Rendered(load_yaml(VALUES_ALL))


@pytest.fixture(params=["default", "values-all"])
def rendered(request, default, full) -> Rendered:
    return default if request.param == "default" else full


# --- Helm's own checks -------------------------------------------------------------------------


# Values that values-all.yaml keeps at their defaults on purpose: the hardening, the daemon's
# probe endpoints, and the switches whose "off" side other tests render.
KEPT_AT_DEFAULT = (
    "podSecurityContext.", "securityContext.", "livenessProbe.enabled", "livenessProbe.path",
    "readinessProbe.enabled", "readinessProbe.path", "nodeSelector.kubernetes.io/os", "updateStrategy.type",
    "updateStrategy.rollingUpdate.maxSurge", "hostPorts.enabled", "service.enabled", "serviceAccount.create",
    "config.content",
)


def test_values_all_sets_every_value():
    """values-all.yaml is only a full test if it sets every key of values.yaml, and to another value."""
    everything = load_yaml(VALUES_ALL)
    for parts, default_value in leaves(load_yaml(CHART / "values.yaml")):
        path, node = ".".join(parts), everything
        for part in parts:
            assert isinstance(node, dict) and part in node, f"values-all.yaml does not set {path}"
            node = node[part]
        if not path.startswith(KEPT_AT_DEFAULT):
            assert node != default_value, f"values-all.yaml sets {path} to its default {default_value!r}"


@pytest.mark.parametrize("which", ["default", "values-all"])
def test_helm_lint_finds_nothing(which):
    values = load_yaml(VALUES_ALL) if which == "values-all" else None
    report = helm.lint(str(CHART), values, strict=True, kube_version=f"v{KUBE_VERSION}")
    assert report["errors"] == []
    # Severity 1 is "info" (only "icon is recommended": the project has no icon).
    assert [m for m in report["messages"] if m["severity"] > 1] == []


def test_chart_metadata():
    chart = load_yaml(CHART / "Chart.yaml")
    assert (chart["apiVersion"], chart["name"], chart["version"], chart["appVersion"]) == ("v2", "xray-daemon", "0.1.0", "0.1.0")


def test_default_render_objects(default):
    # The Pod is the `helm test` hook: Helm creates it only on `helm test`.
    assert default.kinds() == ["DaemonSet", "Pod", "Service", "ServiceAccount"]


def test_full_render_objects(full):
    assert full.kinds() == [
        "ConfigMap", "ConfigMap", "DaemonSet", "PodMonitor", "PrometheusRule", "Service", "ServiceAccount", "ServiceMonitor",
    ]


# --- Kubernetes schemas ------------------------------------------------------------------------


def test_manifests_pass_kubernetes_validate(default, full, tmp_path):
    # kubernetes-validate has no schema for the ServiceMonitor CRD and only warns about it (rc 0),
    # as it would for a misspelt kind: so the CRD is left out here and checked on its own below,
    # and any warning fails this test. One call for all files (each call loads the schemas).
    files = {
        "default": default.write(tmp_path / "default.yaml", kinds_out=CRD_KINDS),
        "values-all": full.write(tmp_path / "values-all.yaml", kinds_out=CRD_KINDS),
    }
    # The check can fail: an unknown field in the DaemonSet is refused.
    daemonset = default.one("DaemonSet")
    broken = write_documents(tmp_path / "broken.yaml", [{**daemonset, "spec": {**daemonset["spec"], "replicas": 3}}])
    result = run(tool("kubernetes-validate"), "--strict", "-k", KUBE_VERSION, *map(str, files.values()), str(broken))
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    problems = [line for line in output.splitlines() if line.startswith(("WARN", "ERROR"))]
    assert len(problems) == 1 and str(broken) in problems[0] and "replicas" in problems[0], output
    for rendered, path in zip((default, full), files.values()):
        passed = re.findall(rf"{re.escape(str(path))} passed for resource (\S+)", output)
        expected = [f"{o['kind'].lower()}/{o['metadata']['name']}" for o in rendered.objects if o["kind"] not in CRD_KINDS]
        assert sorted(passed) == sorted(expected), output


def check_crd_object(document: dict, broken: dict[str, dict], tmp_path: Path) -> dict[str, list[str]]:
    """kubernetes-validate knows no CRDs: a CRD object is checked against <kind>.schema.json, a
    strict subset of prometheus-operator's CRD schema. It must pass, and each broken copy fail."""
    files = [tmp_path / "object.json"]
    files[0].write_text(json.dumps(document))
    for name, copy in broken.items():
        files.append(tmp_path / f"{name}.json")
        files[-1].write_text(json.dumps(copy))
    failures = check_jsonschema(HERE / f"{document['kind'].lower()}.schema.json", *files)
    assert sorted(failures) == sorted(f"{name}.json" for name in broken), failures
    return failures


def test_service_monitor_matches_the_crd_and_the_service(full, tmp_path):
    monitor = full.one("ServiceMonitor")
    (endpoint,) = monitor["spec"]["endpoints"]
    misspelt = {**monitor, "spec": {**monitor["spec"], "endpoints": [{**endpoint, "intervall": "5s"}]}}
    failures = check_crd_object(monitor, {"misspelt": misspelt}, tmp_path)
    assert "intervall" in failures["misspelt.json"][0], failures

    # It must find the Service: selector, namespace, and a port of that name on TCP.
    service = full.one("Service")
    spec = monitor["spec"]
    assert spec["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert spec["namespaceSelector"]["matchNames"] == [service["metadata"]["namespace"]]
    tcp_ports = {p["name"] for p in service["spec"]["ports"] if p["protocol"] == "TCP"}
    assert endpoint["port"] in tcp_ports
    assert (endpoint["path"], endpoint["interval"], endpoint["scrapeTimeout"]) == ("/metrics", "15s", "5s")
    assert monitor["metadata"]["namespace"] == "monitoring"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    # The chart's own relabeling (the node, for the dashboard) comes first, then the user's.
    node = {"sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "node"}
    assert endpoint["relabelings"] == [node, *load_yaml(VALUES_ALL)["serviceMonitor"]["relabelings"]]
    assert endpoint["metricRelabelings"][0]["action"] == "drop"


def test_pod_monitor_matches_the_crd_and_the_pods(full, tmp_path):
    monitor = full.one("PodMonitor")
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    misspelt = {**monitor, "spec": {**monitor["spec"], "podMetricsEndpoints": [{**endpoint, "targetport": "x"}]}}
    failures = check_crd_object(monitor, {"misspelt": misspelt}, tmp_path)
    assert "targetport" in failures["misspelt.json"][0], failures

    # It selects the DaemonSet's pods, in the release's namespace, on their named TCP port.
    spec = monitor["spec"]
    assert spec["selector"]["matchLabels"].items() <= full.pod()["metadata"]["labels"].items()
    assert spec["namespaceSelector"]["matchNames"] == [NAMESPACE]
    assert full.ports()[endpoint["port"]]["protocol"] == "TCP"
    assert (endpoint["path"], endpoint["interval"], endpoint["scrapeTimeout"]) == ("/metrics", "20s", "4s")
    assert monitor["metadata"]["namespace"] == "monitoring"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    node = {"sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "node"}
    assert endpoint["relabelings"] == [node, *load_yaml(VALUES_ALL)["podMonitor"]["relabelings"]]
    assert endpoint["metricRelabelings"][0]["regex"] == "process_virtual_memory_bytes"


def test_monitors_are_off_by_default(default):
    assert not {"ServiceMonitor", "PodMonitor", "PrometheusRule"} & set(default.kinds())
    assert [o for o in default.objects if o["kind"] == "ConfigMap"] == []


def test_prometheus_rule_matches_the_crd(full, tmp_path):
    rule = full.one("PrometheusRule")
    first = rule["spec"]["groups"][0]["rules"][0]
    misspelt = {**rule, "spec": {"groups": [{"name": "g", "rules": [{**first, "annotation": {}}]}]}}
    both = {**rule, "spec": {"groups": [{"name": "g", "rules": [{**first, "record": "x:y"}]}]}}
    failures = check_crd_object(rule, {"misspelt": misspelt, "both": both}, tmp_path)
    assert "annotation" in failures["misspelt.json"][0]
    assert rule["metadata"]["namespace"] == "monitoring"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"


# --- values.schema.json ------------------------------------------------------------------------


def check_jsonschema(schema: Path, *files: Path) -> dict[str, list[str]]:
    """check-jsonschema's verdict: the failing files, each with its error paths and messages."""
    result = run(tool("check-jsonschema"), "-o", "json", "--schemafile", str(schema), *map(str, files))
    report = json.loads(result.stdout)
    assert report["parse_errors"] == [], result.stdout
    failures: dict[str, list[str]] = {}
    for error in report["errors"]:
        failures.setdefault(Path(error["filename"]).name, []).append(f"{error['path']}: {error['message']}")
    assert (result.returncode != 0) == bool(failures), result.stdout + result.stderr
    return failures


def test_values_files_match_schema(tmp_path):
    # values.yaml and values-all.yaml pass; a copy of values.yaml with one bad value fails on
    # that value alone (so the check can fail).
    bad = tmp_path / "bad-values.yaml"
    bad.write_text((CHART / "values.yaml").read_text().replace("  logLevel: null", "  logLevel: loud"))
    failures = check_jsonschema(CHART / "values.schema.json", CHART / "values.yaml", VALUES_ALL, bad)
    assert list(failures) == ["bad-values.yaml"], failures
    (error,) = failures["bad-values.yaml"]
    assert error.startswith("$.daemon.logLevel: 'loud'"), error


def test_schema_is_draft_07():
    assert json.loads((CHART / "values.schema.json").read_text())["$schema"] == "http://json-schema.org/draft-07/schema#"


INVALID = [
    ("daemon.logLevel=loud", "/daemon/logLevel"),
    ("daemon.logFormat=xml", "/daemon/logFormat"),
    ("daemon.concurrency=0", "/daemon/concurrency"),
    ("daemon.concurrency=65", "/daemon/concurrency"),
    ("daemon.bufferMemoryMB=2", "/daemon/bufferMemoryMB"),
    ("daemon.uploadTimeout=soon", "/daemon/uploadTimeout"),
    ("daemon.udpAddress=0.0.0.0", "/daemon/udpAddress"),
    ("daemon.endpoint=xray.local", "/daemon/endpoint"),
    ("daemon.telemetry=maybe", "/daemon/telemetry"),
    ("daemon.logLevl=debug", "logLevl"),  # a misspelt option is refused, not ignored
    ("regoin=us-east-1", "regoin"),
    ("region=us east", "/region"),
    ("image.pullPolicy=Sometimes", "/image/pullPolicy"),
    ("image.digest=sha256:abc", "/image/digest"),
    ("hostPorts.udp=70000", "/hostPorts/udp"),
    ("service.internalTrafficPolicy=Nearby", "/service/internalTrafficPolicy"),
    ("updateStrategy.type=Recreate", "/updateStrategy/type"),
    ("config.settings.Version=3", "/config/settings/Version"),
    ("livenessProbe.path=health", "/livenessProbe/path"),
    ("otlp.enabled=yes", "/otlp/enabled"),
    ("otlp.port=0", "/otlp/port"),
    ("otlp.port=65536", "/otlp/port"),
    ("otlp.address=0.0.0.0:4318", "address"),  # the port is the only setting
    ("otlp.spanUpload=xray", "/otlp/spanUpload"),
    ("otlp.indexedAttributes=http.method", "/otlp/indexedAttributes"),  # a list, not a comma string
    ("otlp.grpc.enabled=yes", "/otlp/grpc/enabled"),
    ("otlp.grpc.port=0", "/otlp/grpc/port"),
    ("otlp.grpc.port=65536", "/otlp/grpc/port"),
    ("otlp.grpc.address=0.0.0.0:4317", "address"),
]


@pytest.mark.parametrize("assignment,where", INVALID, ids=[a for a, _ in INVALID])
def test_schema_rejects(assignment, where):
    values = set_values(assignment)
    with pytest.raises(helm.HelmValuesError) as raised:
        chart().validate_schema(values)
    assert where in str(raised.value)
    # `helm install` / `helm template` validate the same way before rendering.
    with pytest.raises(helm.HelmValuesError):
        render(values)


# --- YAML style --------------------------------------------------------------------------------


def test_yamllint(default, full, tmp_path):
    # The templates themselves are not YAML: lint what Helm made of them, and the values files.
    rendered = [default.write(tmp_path / "default.yaml"), full.write(tmp_path / "full.yaml")]
    files = [*rendered, CHART / "values.yaml", CHART / "Chart.yaml", VALUES_ALL]
    result = run(tool("yamllint"), "-f", "parsable", "-d", "relaxed", *map(str, files))
    assert result.returncode == 0, result.stdout + result.stderr


# --- What the chart decides --------------------------------------------------------------------


def test_default_daemonset_ports_and_probes(default):
    ports = default.ports()
    assert set(ports) == {"xray-ingest", "xray-tcp"}  # no OTLP listener unless otlp.enabled or otlp.grpc.enabled
    assert ports["xray-ingest"] == {"name": "xray-ingest", "containerPort": 2000, "protocol": "UDP", "hostPort": 2000}
    assert ports["xray-tcp"] == {"name": "xray-tcp", "containerPort": 2000, "protocol": "TCP", "hostPort": 2000}
    container = default.container()
    assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": "xray-tcp"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "xray-tcp"}
    spec = default.pod()["spec"]
    assert "hostNetwork" not in spec and "dnsPolicy" not in spec
    assert spec["terminationGracePeriodSeconds"] == 30


def test_default_image_command_and_resources(default):
    container = default.container()
    assert container["image"] == "ghcr.io/xray-daemon/xray-daemon:0.1.0"
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert container["command"] == ["/xray-daemon"]
    assert "args" not in container
    assert container["resources"] == {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "64Mi"}}


def test_default_env(default):
    # Listen on all of the pod's addresses (the daemon's own default is loopback only) and use an
    # explicit buffer that fits the 64Mi limit; everything else is the daemon's default.
    assert default.env() == {
        "XRAY_DAEMON_UDP_ADDRESS": "0.0.0.0:2000",
        "XRAY_DAEMON_TCP_ADDRESS": "0.0.0.0:2000",
        "XRAY_DAEMON_BUFFER_MEMORY_MB": "16",
    }


def test_security_context(rendered):
    pod, container = rendered.pod()["spec"]["securityContext"], rendered.container()["securityContext"]
    for context in (pod, container):
        assert context["runAsNonRoot"] is True
        assert (context["runAsUser"], context["runAsGroup"]) == (10001, 10001)
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["readOnlyRootFilesystem"] is True
    assert container["allowPrivilegeEscalation"] is False
    assert container["capabilities"] == {"drop": ["ALL"]}


def test_default_scheduling(default):
    spec = default.one("DaemonSet")["spec"]
    assert spec["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}
    pod = spec["template"]["spec"]
    assert pod["tolerations"] == [{"operator": "Exists"}]
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    (term,) = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert term["matchExpressions"] == [{"key": "eks.amazonaws.com/compute-type", "operator": "NotIn", "values": ["fargate"]}]
    assert "priorityClassName" not in pod


def test_default_scheduling_can_be_dropped():
    spec = Rendered(set_values("affinity=null", "tolerations=null")).pod()["spec"]
    assert "affinity" not in spec and "tolerations" not in spec


def test_default_service_and_service_account(default):
    service, account = default.one("Service"), default.one("ServiceAccount")
    assert service["spec"]["internalTrafficPolicy"] == "Local"
    assert service["spec"]["type"] == "ClusterIP"
    ports = {(p["protocol"], p["port"], p["targetPort"]) for p in service["spec"]["ports"]}
    assert ports == {("UDP", 2000, "xray-ingest"), ("TCP", 2000, "xray-tcp")}
    # The Service and the DaemonSet find each other.
    pod_labels = default.pod()["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert default.one("DaemonSet")["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert set(default.ports()) >= {p["targetPort"] for p in service["spec"]["ports"]}
    assert default.pod()["spec"]["serviceAccountName"] == account["metadata"]["name"]
    assert "annotations" not in account["metadata"]
    assert account["automountServiceAccountToken"] is False
    assert default.pod()["spec"]["automountServiceAccountToken"] is False
    for obj in default.objects:
        assert obj["metadata"]["namespace"] == NAMESPACE


def test_every_daemon_value_has_its_variable():
    """Every key under `daemon:` in values.yaml is in DAEMON_ENV, and the reverse."""
    assert set(load_yaml(CHART / "values.yaml")["daemon"]) == set(DAEMON_ENV)
    schema = yaml.safe_load((CHART / "values.schema.json").read_text())
    assert set(schema["properties"]["daemon"]["properties"]) == set(DAEMON_ENV)


def test_daemon_reads_the_variables_the_chart_sets():
    """The variables the chart sets for current options are ones the daemon's source reads."""
    sources = ROOT / "src"
    if not sources.is_dir():
        pytest.skip("no daemon sources beside the chart")
    text = "".join(p.read_text() for p in sources.rglob("*.rs"))
    unread = sorted(name for name in set(DAEMON_ENV.values()) | CHART_ENV if f'"{name}"' not in text)
    assert unread == []


def env_text(value) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def test_values_all_env(full):
    values = load_yaml(VALUES_ALL)
    expected = {DAEMON_ENV[key]: env_text(value) for key, value in values["daemon"].items()}
    assert len(expected) == len(DAEMON_ENV)
    expected |= {
        "XRAY_DAEMON_REGION": "eu-west-1",
        "AWS_REGION": "eu-west-1",
        "XRAY_DAEMON_ROLE_ARN": "arn:aws:iam::123456789012:role/xray-cross-account",
        "XRAY_DAEMON_OTLP_ADDRESS": "0.0.0.0:4319",
        "XRAY_DAEMON_OTLP_GRPC_ADDRESS": "0.0.0.0:4316",
        "XRAY_DAEMON_SPAN_UPLOAD": "segments",
        "XRAY_DAEMON_INDEXED_ATTRIBUTES": "http.method,otel.resource.service.name",
        "XRAY_DAEMON_INDEX_ALL_ATTRIBUTES": "false",
        "HTTPS_PROXY": "http://proxy.internal:3128",
        "AWS_STS_REGIONAL_ENDPOINTS": "regional",
        "XRAY_DAEMON_SPOOL_DIR": "/var/lib/xray-daemon/spool",
        "XRAY_DAEMON_SPOOL_MAX_MB": "1024",
        "XRAY_DAEMON_SPOOL_REPLAY_RATE_KB": "4096",
    }
    assert full.env() == expected
    assert full.container()["envFrom"] == [{"configMapRef": {"name": "xray-extra-env"}}]


def test_unset_daemon_values_are_left_to_the_daemon():
    env = Rendered(set_values("daemon.bufferMemoryMB=null", "daemon.logLevel=", "daemon.telemetry=false")).env()
    assert "XRAY_DAEMON_BUFFER_MEMORY_MB" not in env and "XRAY_DAEMON_LOG_LEVEL" not in env
    assert env["XRAY_DAEMON_TELEMETRY"] == "false"  # false is a value, not "unset"


def test_numbers_render_as_whole_numbers():
    # Helm reads numbers from JSON/YAML as float64: 100000 must not become "1e+05".
    env = Rendered({"daemon": {"receiveBufferKB": 100000, "bufferMemoryMB": 1000000, "shutdownTimeout": 2.5}}).env()
    assert env["XRAY_DAEMON_RECEIVE_BUFFER_KB"] == "100000"
    assert env["XRAY_DAEMON_BUFFER_MEMORY_MB"] == "1000000"
    assert env["XRAY_DAEMON_SHUTDOWN_TIMEOUT"] == "2.5"


def test_region_sets_aws_region_too():
    env = Rendered(set_values("region=us-east-1")).env()
    assert env["XRAY_DAEMON_REGION"] == env["AWS_REGION"] == "us-east-1"


def test_values_all_pod(full):
    daemonset = full.one("DaemonSet")
    pod = daemonset["spec"]["template"]
    spec, container = pod["spec"], full.container()
    assert daemonset["metadata"]["name"] == "xray-node-daemon"
    assert pod["metadata"]["labels"]["app.kubernetes.io/name"] == "xray"
    assert pod["metadata"]["labels"]["example.com/tier"] == "tracing"
    assert pod["metadata"]["annotations"]["example.com/team"] == "observability"
    # global.imageRegistry wins over image.registry.
    assert container["image"] == (
        "mirror.example.com/mirror/xray-daemon@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    )
    assert container["imagePullPolicy"] == "Always"
    assert spec["imagePullSecrets"] == [{"name": "registry-credentials"}]
    assert container["command"] == ["/usr/bin/xray"]
    assert container["args"] == ["-c", "/etc/amazon/xray/cfg.yaml", "--log-level", "debug"]
    assert spec["hostNetwork"] is True and spec["dnsPolicy"] == "None"
    assert full.ports()["xray-ingest"] == {"name": "xray-ingest", "containerPort": 3000, "protocol": "UDP", "hostPort": 3000}
    assert full.ports()["xray-tcp"] == {"name": "xray-tcp", "containerPort": 3001, "protocol": "TCP", "hostPort": 3001}
    assert full.ports()["otlp"] == {"name": "otlp", "containerPort": 4319, "protocol": "TCP", "hostPort": 4319}
    assert full.ports()["otlp-grpc"] == {"name": "otlp-grpc", "containerPort": 4316, "protocol": "TCP", "hostPort": 4316}
    assert container["livenessProbe"] == {
        "httpGet": {"path": "/health", "port": "xray-tcp"},
        "initialDelaySeconds": 3, "periodSeconds": 20, "timeoutSeconds": 4, "failureThreshold": 5,
    }
    assert container["readinessProbe"] == {
        "httpGet": {"path": "/ready", "port": "xray-tcp"},
        "initialDelaySeconds": 1, "periodSeconds": 7, "timeoutSeconds": 3, "failureThreshold": 2, "successThreshold": 2,
    }
    assert spec["terminationGracePeriodSeconds"] == 45
    assert container["resources"]["limits"] == {"cpu": "500m", "memory": "128Mi"}
    assert spec["securityContext"]["fsGroup"] == 10001
    assert spec["nodeSelector"]["node.example.com/pool"] == "apps"
    assert spec["tolerations"] == [{"key": "dedicated", "operator": "Equal", "value": "apps", "effect": "NoSchedule"}]
    assert spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0][
        "matchExpressions"
    ][0]["key"] == "kubernetes.io/arch"
    assert spec["priorityClassName"] == "system-node-critical"
    assert daemonset["spec"]["updateStrategy"]["rollingUpdate"] == {"maxUnavailable": "10%", "maxSurge": 0}
    assert {"name": "ca-bundle", "configMap": {"name": "corporate-ca"}} in spec["volumes"]
    assert {"name": "ca-bundle", "mountPath": "/etc/ssl/corporate", "readOnly": True} in container["volumeMounts"]


def test_values_all_service_account_and_service(full):
    account, service = full.one("ServiceAccount"), full.one("Service")
    assert account["metadata"]["name"] == "xray-daemon-sa" == full.pod()["spec"]["serviceAccountName"]
    assert account["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/xray-daemon"}
    assert account["automountServiceAccountToken"] is True and full.pod()["spec"]["automountServiceAccountToken"] is True
    assert service["metadata"]["name"] == "xray-service"
    assert service["metadata"]["annotations"] == {"example.com/owner": "observability"}
    assert service["spec"]["internalTrafficPolicy"] == "Cluster"
    assert {(p["protocol"], p["port"], p["targetPort"]) for p in service["spec"]["ports"]} == {
        ("UDP", 2100, "xray-ingest"),
        ("TCP", 2100, "xray-tcp"),
        ("TCP", 4319, "otlp"),
        ("TCP", 4316, "otlp-grpc"),
    }


def test_existing_service_account():
    rendered = Rendered(set_values("serviceAccount.create=false", "serviceAccount.name=shared-xray"))
    assert "ServiceAccount" not in rendered.kinds()
    assert rendered.pod()["spec"]["serviceAccountName"] == "shared-xray"


def config_volume(rendered: Rendered) -> tuple[dict, dict]:
    (mount,) = [m for m in rendered.container()["volumeMounts"] if m["name"] == "config"]
    (volume,) = [v for v in rendered.pod()["spec"]["volumes"] if v["name"] == "config"]
    return mount, volume


def test_config_settings_become_cfg_yaml(full):
    (config_map,) = [o for o in full.objects if o["kind"] == "ConfigMap" and "cfg.yaml" in o["data"]]
    settings = load_yaml(VALUES_ALL)["config"]["settings"]
    assert yaml.safe_load(config_map["data"]["cfg.yaml"]) == {**settings, "Version": 2}
    mount, volume = config_volume(full)
    assert mount == {"name": "config", "mountPath": "/etc/amazon/xray", "readOnly": True}
    assert volume["configMap"] == {"name": config_map["metadata"]["name"], "items": [{"key": "cfg.yaml", "path": "cfg.yaml"}]}
    assert full.container()["args"][:2] == ["-c", mount["mountPath"] + "/cfg.yaml"]


def test_config_content_is_used_verbatim_and_rolls_the_pods():
    content = "Version: 2\nTotalBufferSizeMB: 24\nSocket:\n  UDPAddress: \"0.0.0.0:2000\"\n"
    first = Rendered({"config": {"enabled": True, "content": content}})
    assert first.one("ConfigMap")["data"]["cfg.yaml"].strip() == content.strip()
    assert first.container()["args"] == ["-c", "/etc/amazon/xray/cfg.yaml"]
    second = Rendered({"config": {"enabled": True, "content": content.replace("24", "32")}})
    checksum = lambda r: r.pod()["metadata"]["annotations"]["checksum/config"]
    assert checksum(first) != checksum(second)
    # An explicit Version in settings is kept.
    kept = Rendered({"config": {"enabled": True, "settings": {"Version": 1, "Region": "us-east-1"}}})
    assert yaml.safe_load(kept.one("ConfigMap")["data"]["cfg.yaml"]) == {"Version": 1, "Region": "us-east-1"}


def test_no_config_no_configmap(default):
    assert "volumes" not in default.pod()["spec"] and "volumeMounts" not in default.container()
    assert "annotations" not in default.pod()["metadata"]


def test_host_network_toggles_dns_policy():
    on = Rendered(set_values("hostNetwork=true")).pod()["spec"]
    off = Rendered(set_values("hostNetwork=false")).pod()["spec"]
    assert (on["hostNetwork"], on["dnsPolicy"]) == (True, "ClusterFirstWithHostNet")
    assert "hostNetwork" not in off and "dnsPolicy" not in off


def test_host_ports():
    none = Rendered(set_values("hostPorts.enabled=false")).ports()
    assert all("hostPort" not in p for p in none.values())
    moved = Rendered(set_values("hostPorts.udp=2001", "hostPorts.tcp=2002")).ports()
    assert (moved["xray-ingest"]["containerPort"], moved["xray-ingest"]["hostPort"]) == (2000, 2001)
    assert (moved["xray-tcp"]["containerPort"], moved["xray-tcp"]["hostPort"]) == (2000, 2002)
    # With hostNetwork the node's ports are the container's, whatever hostPorts.enabled says.
    host = Rendered(set_values("hostNetwork=true", "hostPorts.enabled=false")).ports()
    assert host["xray-ingest"]["hostPort"] == 2000 and host["xray-tcp"]["hostPort"] == 2000


# Each OTLP listener: its values' key, its container and Service port's name, its variable, its default
# port and another one.
OTLP_LISTENERS = [
    ("otlp", "otlp", "XRAY_DAEMON_OTLP_ADDRESS", 4318, 4320),
    ("otlp.grpc", "otlp-grpc", "XRAY_DAEMON_OTLP_GRPC_ADDRESS", 4317, 14317),
]


@pytest.mark.parametrize("key,name,variable,port,other", OTLP_LISTENERS, ids=["http", "grpc"])
def test_otlp_listeners_are_off_by_default_and_exposed_like_the_other_ports(default, key, name, variable, port, other):
    assert variable not in default.env()
    assert name not in default.ports()
    assert name not in {p["name"] for p in default.one("Service")["spec"]["ports"]}

    on = Rendered(set_values(f"{key}.enabled=true"))
    assert on.env()[variable] == f"0.0.0.0:{port}"
    assert on.ports()[name] == {"name": name, "containerPort": port, "protocol": "TCP", "hostPort": port}
    service_ports = {p["name"]: p for p in on.one("Service")["spec"]["ports"]}
    assert service_ports[name] == {"name": name, "port": port, "targetPort": name, "protocol": "TCP"}
    # The probes and the ServiceMonitor stay on the TCP port.
    assert on.container()["readinessProbe"]["httpGet"]["port"] == "xray-tcp"

    moved = Rendered(set_values(f"{key}.enabled=true", f"{key}.port={other}"))
    assert moved.env()[variable] == f"0.0.0.0:{other}"
    assert (moved.ports()[name]["containerPort"], moved.ports()[name]["hostPort"]) == (other, other)
    # Host ports follow hostPorts.enabled and hostNetwork, as for UDP and TCP.
    assert "hostPort" not in Rendered(set_values(f"{key}.enabled=true", "hostPorts.enabled=false")).ports()[name]
    host = Rendered(set_values(f"{key}.enabled=true", "hostNetwork=true", "hostPorts.enabled=false")).ports()
    assert host[name]["hostPort"] == port


def test_each_otlp_listener_is_turned_on_by_itself():
    grpc = Rendered(set_values("otlp.grpc.enabled=true"))
    assert "XRAY_DAEMON_OTLP_ADDRESS" not in grpc.env() and "otlp" not in grpc.ports()
    http = Rendered(set_values("otlp.enabled=true"))
    assert "XRAY_DAEMON_OTLP_GRPC_ADDRESS" not in http.env() and "otlp-grpc" not in http.ports()
    both = Rendered(set_values("otlp.enabled=true", "otlp.grpc.enabled=true")).ports()
    assert (both["otlp"]["containerPort"], both["otlp-grpc"]["containerPort"]) == (4318, 4317)


def test_span_upload_and_indexed_attributes_are_the_daemons_defaults_unless_set(default):
    env = default.env()
    assert not {"XRAY_DAEMON_SPAN_UPLOAD", "XRAY_DAEMON_INDEXED_ATTRIBUTES", "XRAY_DAEMON_INDEX_ALL_ATTRIBUTES"} & set(env)
    on = Rendered(set_values("otlp.spanUpload=otlp", "otlp.indexedAttributes={http.method,otel.resource.service.name}",
                             "otlp.indexAllAttributes=false"))
    assert on.env()["XRAY_DAEMON_SPAN_UPLOAD"] == "otlp"
    assert on.env()["XRAY_DAEMON_INDEXED_ATTRIBUTES"] == "http.method,otel.resource.service.name"
    assert on.env()["XRAY_DAEMON_INDEX_ALL_ATTRIBUTES"] == "false"


def test_notes_tell_apps_where_to_send(default, full):
    assert "AWS_XRAY_DAEMON_ADDRESS" in default.notes
    assert "xray-xray-daemon.observability.svc.cluster.local:2000" in default.notes
    assert "status.hostIP" in default.notes and "$(HOST_IP):2000" in default.notes
    assert "xray-service.observability.svc.cluster.local:2100" in full.notes
    assert "$(HOST_IP):3000" in full.notes
    assert "No region is set" in default.notes and "No region is set" not in full.notes
    assert "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" not in default.notes
    assert "value: http://xray-service.observability.svc.cluster.local:4319/v1/traces" in full.notes
    assert "Transaction Search" in full.notes
    # Without the Service, the node's IP and the host port.
    direct = Rendered(set_values("otlp.enabled=true", "service.enabled=false")).notes
    assert "value: http://$(HOST_IP):4318/v1/traces" in direct
    # OTLP/gRPC: the endpoint has no path, and the protocol is grpc.
    assert "value: grpc" not in default.notes
    assert "value: http://xray-service.observability.svc.cluster.local:4316\n" in full.notes
    assert "value: grpc" in full.notes
    direct = Rendered(set_values("otlp.grpc.enabled=true", "service.enabled=false")).notes
    assert "value: http://$(HOST_IP):4317\n" in direct and "/v1/traces" not in direct


REFUSED = [
    (["daemon.shutdownTimeout=30s"], "terminationGracePeriodSeconds"),
    (["daemon.shutdownTimeout=1m", "terminationGracePeriodSeconds=45"], "terminationGracePeriodSeconds"),
    (["terminationGracePeriodSeconds=5"], "terminationGracePeriodSeconds"),  # the daemon's 5s default
    (["config.enabled=true"], "config.content or config.settings"),
    (["serviceMonitor.enabled=true", "service.enabled=false"], "service.enabled"),
    (["hostNetwork=true", "hostPorts.udp=2001"], "hostNetwork"),
    (["updateStrategy.rollingUpdate.maxSurge=1"], "maxSurge"),
    (["otlp.enabled=true", "otlp.port=2000"], "otlp.port (2000) is the TCP port"),
    (["otlp.enabled=true", "hostPorts.tcp=4318"], "otlp.port (4318) is also hostPorts.tcp"),
    (["otlp.grpc.enabled=true", "otlp.grpc.port=2000"], "otlp.grpc.port (2000) is the TCP port"),
    (["otlp.grpc.enabled=true", "hostPorts.tcp=4317"], "otlp.grpc.port (4317) is also hostPorts.tcp"),
    (["otlp.grpc.enabled=true", "otlp.enabled=true", "otlp.grpc.port=4318"], "otlp.grpc.port (4318) is also otlp.port"),
]


@pytest.mark.parametrize("assignments,message", REFUSED, ids=[",".join(a) for a, _ in REFUSED])
def test_refused_combinations(assignments, message):
    with pytest.raises(helm.HelmRenderError, match=re.escape(message)):
        render(set_values(*assignments))


def strategy(rendered: Rendered) -> dict:
    return rendered.one("DaemonSet")["spec"]["updateStrategy"]


ACCEPTED = [
    (["daemon.shutdownTimeout=29s"], lambda r: r.env()["XRAY_DAEMON_SHUTDOWN_TIMEOUT"] == "29s"),
    (["daemon.shutdownTimeout=500ms", "terminationGracePeriodSeconds=1"], lambda r: r.pod()["spec"]["terminationGracePeriodSeconds"] == 1),
    (["daemon.shutdownTimeout=10", "terminationGracePeriodSeconds=11"], lambda r: r.env()["XRAY_DAEMON_SHUTDOWN_TIMEOUT"] == "10"),
    (["updateStrategy.rollingUpdate.maxSurge=1", "hostPorts.enabled=false"], lambda r: strategy(r)["rollingUpdate"]["maxSurge"] == 1),
    (["updateStrategy.type=OnDelete"], lambda r: strategy(r) == {"type": "OnDelete"}),
    # The OTLP listener may take the UDP port's number: they are different protocols.
    (["otlp.enabled=true", "otlp.port=2000", "daemon.tcpAddress=0.0.0.0:2001", "hostPorts.tcp=2001"],
     lambda r: r.ports()["otlp"]["containerPort"] == r.ports()["xray-ingest"]["containerPort"] == 2000),
]


@pytest.mark.parametrize("assignments,check", ACCEPTED, ids=[",".join(a) for a, _ in ACCEPTED])
def test_accepted_combinations(assignments, check):
    assert check(Rendered(set_values(*assignments)))


# --- Chart conventions -------------------------------------------------------------------------


def test_common_labels_on_every_object_and_the_pods(full, default):
    for obj in full.objects:
        assert obj["metadata"]["labels"]["example.com/cost-centre"] == "tracing", obj["kind"]
    assert full.pod()["metadata"]["labels"]["example.com/cost-centre"] == "tracing"
    # Never in a selector: a DaemonSet's selector cannot change after install.
    assert "example.com/cost-centre" not in full.one("DaemonSet")["spec"]["selector"]["matchLabels"]
    assert all("example.com/cost-centre" not in o["metadata"]["labels"] for o in default.objects)


def test_service_account_labels(full):
    assert full.one("ServiceAccount")["metadata"]["labels"]["example.com/access"] == "xray-write"


def test_revision_history_and_dns(default, full):
    assert default.one("DaemonSet")["spec"]["revisionHistoryLimit"] == 10
    assert full.one("DaemonSet")["spec"]["revisionHistoryLimit"] == 3
    # An explicit dnsPolicy wins over hostNetwork's ClusterFirstWithHostNet.
    spec = full.pod()["spec"]
    assert spec["dnsPolicy"] == "None"
    assert spec["dnsConfig"]["nameservers"] == ["169.254.20.10"]
    assert spec["dnsConfig"]["options"] == [{"name": "ndots", "value": "2"}]
    assert Rendered(set_values("dnsPolicy=Default")).pod()["spec"]["dnsPolicy"] == "Default"
    assert "dnsConfig" not in default.pod()["spec"]


def test_image_registry():
    image = lambda *a: Rendered(set_values(*a)).container()["image"]
    assert image("image.registry=registry.example.com", "image.repository=team/xray") == "registry.example.com/team/xray:0.1.0"
    assert image("global.imageRegistry=mirror.example.com/") == "mirror.example.com/ghcr.io/xray-daemon/xray-daemon:0.1.0"
    assert image("image.registry=a.example.com", "global.imageRegistry=b.example.com", "image.repository=x") == "b.example.com/x:0.1.0"


def test_proxy_values_become_the_daemon_variables():
    env = Rendered(set_values("daemon.proxyTimeout=20s", "daemon.proxyClientTimeout=500ms", "daemon.proxyMaxBodyKB=4096")).env()
    assert env["XRAY_DAEMON_PROXY_TIMEOUT"] == "20s"
    assert env["XRAY_DAEMON_PROXY_CLIENT_TIMEOUT"] == "500ms"
    assert env["XRAY_DAEMON_PROXY_MAX_BODY_KB"] == "4096"
    for bad, where in (("daemon.proxyMaxBodyKB=0", "/daemon/proxyMaxBodyKB"), ("daemon.proxyTimeout=soon", "/daemon/proxyTimeout")):
        with pytest.raises(helm.HelmValuesError, match=re.escape(where)):
            render(set_values(bad))


def test_helm_test_pod_runs_the_images_health_check(default):
    (pod,) = [o for o in default.objects if o["kind"] == "Pod"]
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    (container,) = pod["spec"]["containers"]
    assert container["image"] == default.container()["image"]
    assert container["command"] == ["/xray-daemon"]
    # Through the Service (internalTrafficPolicy Local: the daemon on the test pod's node), on its TCP port.
    assert container["args"] == ["health-check", "xray-xray-daemon.observability.svc:2000"]
    assert container["securityContext"] == default.container()["securityContext"]
    assert pod["spec"]["restartPolicy"] == "Never"
    # It lands where the daemons run.
    assert pod["spec"]["tolerations"] == default.pod()["spec"]["tolerations"]
    assert pod["spec"]["affinity"] == default.pod()["spec"]["affinity"]


def test_helm_test_pod_without_the_service_uses_the_node_ip():
    rendered = Rendered(set_values("service.enabled=false", "hostPorts.tcp=2002"))
    (pod,) = [o for o in rendered.objects if o["kind"] == "Pod"]
    (container,) = pod["spec"]["containers"]
    assert container["args"] == ["health-check", "$(HOST_IP):2002"]
    assert container["env"] == [{"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}}]
    with pytest.raises(helm.HelmRenderError, match="test.enabled needs"):
        render(set_values("service.enabled=false", "hostPorts.enabled=false"))
    assert "Pod" not in Rendered(set_values("test.enabled=false")).kinds()


def test_chart_metadata_links():
    chart = load_yaml(CHART / "Chart.yaml")
    assert chart["home"].startswith("https://") and chart["sources"] and chart["maintainers"][0]["name"]


# --- Disk spool --------------------------------------------------------------------------------


def spool(rendered: Rendered) -> tuple[dict, dict]:
    (mount,) = [m for m in rendered.container()["volumeMounts"] if m["name"] == "spool"]
    (volume,) = [v for v in rendered.pod()["spec"]["volumes"] if v["name"] == "spool"]
    return mount, volume


def test_spool_is_off_by_default(default):
    assert not {"XRAY_DAEMON_SPOOL_DIR", "XRAY_DAEMON_SPOOL_MAX_MB"} & set(default.env())
    assert "initContainers" not in default.pod()["spec"]


def test_spool_on_a_host_path():
    rendered = Rendered(set_values("spool.enabled=true"))
    mount, volume = spool(rendered)
    env = rendered.env()
    assert env["XRAY_DAEMON_SPOOL_DIR"] == mount["mountPath"] == "/var/lib/xray-daemon/spool"
    assert env["XRAY_DAEMON_SPOOL_MAX_MB"] == "512"
    assert volume["hostPath"] == {"path": "/var/lib/xray-daemon/spool", "type": "DirectoryOrCreate"}
    assert not mount.get("readOnly")
    # The root filesystem stays read-only: only the spool is writable.
    assert rendered.container()["securityContext"]["readOnlyRootFilesystem"] is True
    assert "initContainers" not in rendered.pod()["spec"]


def test_spool_host_path_permissions_init_container():
    rendered = Rendered(set_values("spool.enabled=true", "spool.hostPath=/data/xray", "spool.initPermissions.enabled=true"))
    (init,) = rendered.pod()["spec"]["initContainers"]
    assert init["image"] == "docker.io/library/busybox:1.37"
    assert init["command"][-1] == "chmod 0700 /var/lib/xray-daemon/spool && chown 10001:10001 /var/lib/xray-daemon/spool"
    context = init["securityContext"]
    assert context["runAsUser"] == 0 and context["capabilities"] == {"drop": ["ALL"], "add": ["CHOWN"]}
    assert context["allowPrivilegeEscalation"] is False and context["readOnlyRootFilesystem"] is True
    assert init["volumeMounts"] == [{"name": "spool", "mountPath": "/var/lib/xray-daemon/spool"}]
    assert spool(rendered)[1]["hostPath"]["path"] == "/data/xray"


def test_spool_on_an_empty_dir(full):
    mount, volume = spool(full)
    assert volume == {"name": "spool", "emptyDir": {"sizeLimit": "2Gi"}}
    assert full.env()["XRAY_DAEMON_SPOOL_MAX_MB"] == "1024"
    assert full.env()["XRAY_DAEMON_SPOOL_REPLAY_RATE_KB"] == "4096"
    # The init container is only for a host path.
    assert "initContainers" not in full.pod()["spec"]
    sized = Rendered(set_values("spool.enabled=true", "spool.volume=emptyDir", "spool.maxMB=100"))
    assert spool(sized)[1]["emptyDir"] == {"sizeLimit": "164Mi"}


@pytest.mark.parametrize("assignment,where", [
    ("spool.volume=nfs", "/spool/volume"), ("spool.maxMB=0", "/spool/maxMB"), ("spool.hostPath=relative", "/spool/hostPath"),
    ("spool.emptyDirSizeLimit=lots", "/spool/emptyDirSizeLimit"),
])
def test_spool_schema_rejects(assignment, where):
    with pytest.raises(helm.HelmValuesError, match=re.escape(where)):
        render(set_values(assignment))
