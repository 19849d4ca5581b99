"""The deployment examples (examples/), checked without AWS or a cluster.

examples/ecs-task-definition.json is validated against the ECS API's own model of
RegisterTaskDefinition (botocore, as `aws ecs register-task-definition` would before sending it),
then checked for what makes the sidecar work: the image's entrypoint, port 2000, the health
check, the address the app sends to. examples/app-pod.yaml is validated by kubernetes-validate
--strict against Kubernetes 1.32 and checked against the Helm chart's defaults (host port, and
the Service name its comment gives, as Helm renders it).

Run: target/venv/bin/python -m pytest tests/docker -q (needs tests/e2e and tests/chart's
requirements in that venv: botocore, helm-python-sdk, kubernetes-validate, yamllint).
"""

import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
ECS = EXAMPLES / "ecs-task-definition.json"
APP = EXAMPLES / "app-pod.yaml"
CHART = ROOT / "helm" / "xray-daemon"
KUBE_VERSION = "1.32.0"
HEALTH_CHECK = ["CMD", "/xray-daemon", "health-check"]
SHUTDOWN_TIMEOUT_S = 5  # the daemon's default XRAY_DAEMON_SHUTDOWN_TIMEOUT


def tool(name):
    path = Path(sys.executable).parent / name
    assert path.exists(), f"{name} is not installed beside {sys.executable}: make peers"
    return str(path)


def run(*args):
    return subprocess.run(args, capture_output=True, text=True, timeout=120)


def cargo_version():
    return re.search(r'^version = "([^"]+)"', (ROOT / "Cargo.toml").read_text(), re.M).group(1)


def chart_values():
    return yaml.safe_load((CHART / "values.yaml").read_text())


# --- ECS --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def task():
    with ECS.open() as f:
        return json.load(f)


def containers(task):
    by_name = {c["name"]: c for c in task["containerDefinitions"]}
    assert set(by_name) == {"my-app", "xray-daemon"}, sorted(by_name)
    return by_name["my-app"], by_name["xray-daemon"]


def env(container):
    return {e["name"]: e["value"] for e in container.get("environment", [])}


def validate_task(task):
    import botocore.session
    from botocore.validate import ParamValidator

    model = botocore.session.get_session().get_service_model("ecs")
    shape = model.operation_model("RegisterTaskDefinition").input_shape
    return ParamValidator().validate(task, shape)


def test_ecs_task_definition_matches_the_ecs_api(task):
    report = validate_task(task)
    assert not report.has_errors(), report.generate_report()
    # the check can fail: a misspelt key and a wrong type are refused
    broken = copy.deepcopy(task)
    broken["containerDefinitions"][1]["healthcheck"] = broken["containerDefinitions"][1].pop("healthCheck")
    broken["containerDefinitions"][0]["essential"] = "yes"
    text = validate_task(broken).generate_report()
    assert "Unknown parameter in containerDefinitions[1]: \"healthcheck\"" in text, text
    assert "containerDefinitions[0].essential" in text, text


def test_ecs_daemon_sidecar(task):
    app, daemon = containers(task)
    repo = chart_values()["image"]["repository"]
    assert daemon["image"] == f"{repo}:{cargo_version()}", "the example should use the chart's image and this version"
    # the image's entrypoint and 0.0.0.0:2000 variables must stay in effect
    assert "entryPoint" not in daemon and "command" not in daemon
    ports = {(p["containerPort"], p["protocol"]) for p in daemon["portMappings"]}
    assert ports == {(2000, "udp"), (2000, "tcp")}
    assert daemon["healthCheck"]["command"] == HEALTH_CHECK
    assert daemon["healthCheck"]["timeout"] < daemon["healthCheck"]["interval"]
    assert daemon["essential"] is False and daemon["restartPolicy"]["enabled"] is True
    assert daemon["stopTimeout"] > SHUTDOWN_TIMEOUT_S
    daemon_env = env(daemon)
    assert daemon_env["AWS_REGION"] == "us-east-1"
    assert daemon_env["XRAY_DAEMON_LOCAL_MODE"] == "true"
    assert int(daemon_env["XRAY_DAEMON_BUFFER_MEMORY_MB"]) * 4 <= daemon["memory"]
    assert daemon["readonlyRootFilesystem"] is True


def test_ecs_app_sends_to_the_sidecar(task):
    app, daemon = containers(task)
    assert task["networkMode"] == "awsvpc", "127.0.0.1 reaches the sidecar only with awsvpc"
    assert env(app)["AWS_XRAY_DAEMON_ADDRESS"] == "127.0.0.1:2000"
    assert app["essential"] is True
    assert app["dependsOn"] == [{"containerName": "xray-daemon", "condition": "START"}]
    assert task["taskRoleArn"].startswith("arn:aws:iam::"), "the daemon signs with the task role"


def test_readme_health_check_is_the_examples():
    """README.md's ECS snippet and the example give the same command."""
    assert f'"command": {json.dumps(HEALTH_CHECK)}' in (ROOT / "README.md").read_text()


# --- Kubernetes -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def app_docs():
    return [d for d in yaml.safe_load_all(APP.read_text()) if d]


def test_app_pod_passes_kubernetes_validate(app_docs, tmp_path):
    (deployment,) = app_docs
    broken = copy.deepcopy(deployment)
    broken["spec"]["template"]["spec"]["containers"][0]["envs"] = []
    broken_file = tmp_path / "broken.yaml"
    broken_file.write_text(yaml.safe_dump(broken))
    result = run(tool("kubernetes-validate"), "--strict", "-k", KUBE_VERSION, str(APP), str(broken_file))
    output = result.stdout + result.stderr
    assert f"{APP} passed for resource deployment/my-app" in output, output
    problems = [line for line in output.splitlines() if line.startswith(("WARN", "ERROR"))]
    assert len(problems) == 1 and str(broken_file) in problems[0] and "envs" in problems[0], output
    assert result.returncode == 1, output


def test_app_pod_yamllint():
    result = run(tool("yamllint"), "-f", "parsable", "-d", "{extends: default, rules: {line-length: {max: 110}}}",
                 str(APP))
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_app_pod_sends_to_its_nodes_daemon(app_docs):
    (deployment,) = app_docs
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = container["env"]
    names = [e["name"] for e in env]
    # $(HOST_IP) expands only if HOST_IP is defined earlier in the list
    assert names.index("HOST_IP") < names.index("AWS_XRAY_DAEMON_ADDRESS")
    host_ip = env[names.index("HOST_IP")]
    assert host_ip["valueFrom"] == {"fieldRef": {"fieldPath": "status.hostIP"}}
    values = chart_values()
    assert values["hostPorts"]["enabled"] is True and values["hostPorts"]["udp"] == values["hostPorts"]["tcp"]
    assert env[names.index("AWS_XRAY_DAEMON_ADDRESS")]["value"] == f"$(HOST_IP):{values['hostPorts']['udp']}"


def test_app_pod_comment_names_the_charts_service():
    """The Service name in the comment is what `helm install xray-daemon ./helm/xray-daemon` creates."""
    import helm_python as helm

    m = re.search(r"value: ([a-z0-9-]+)\.([a-z0-9-]+)\.svc\.cluster\.local:(\d+)", APP.read_text())
    assert m, "app-pod.yaml should show the Service-name alternative"
    name, namespace, port = m.group(1), m.group(2), int(m.group(3))
    with helm.Chart.load(str(CHART)) as chart:
        manifests = chart.render({"region": "us-east-1"}, name="xray-daemon", namespace=namespace)
    services = [d for path, text in manifests.items() if not path.endswith("NOTES.txt")
                for d in yaml.safe_load_all(text) if d and d["kind"] == "Service"]
    assert [s["metadata"]["name"] for s in services] == [name]
    assert {p["port"] for p in services[0]["spec"]["ports"]} == {port}
