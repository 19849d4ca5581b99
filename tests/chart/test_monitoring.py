"""The chart's alerts (PrometheusRule) and Grafana dashboard, checked with the real tools.

`promtool check rules` checks the rendered rule groups, and `promtool test rules` runs
alerts_test.yaml: each alert fires from synthetic series and stays quiet otherwise. promtool comes
from Debian's `prometheus` package (`make peers` installs it). Then a real Prometheus server
(loopback, a temporary directory, a 1 s scrape interval) scrapes a running daemon
($XRAY_DAEMON_BIN, sending to a fake X-Ray on loopback) under UDP traffic, and every alert's query
and every dashboard target is evaluated through Prometheus' HTTP API: each must return data, so a
metric the daemon does not export fails here. The README's runbooks are checked against the alerts.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from test_chart import CHART, HERE, NAMESPACE, RELEASE, ROOT, VALUES_ALL, Rendered, load_yaml, set_values

LOOPBACK = "127.0.0.1"


def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool is not installed: apt-get install prometheus (make peers does it)"
    return path


@pytest.fixture(scope="module")
def monitored() -> Rendered:
    return Rendered(set_values("prometheusRule.enabled=true", "grafanaDashboard.enabled=true", "podMonitor.enabled=true"))


def rule_groups(rendered: Rendered) -> list[dict]:
    return rendered.one("PrometheusRule")["spec"]["groups"]


def alerts(rendered: Rendered) -> list[dict]:
    return [rule for group in rule_groups(rendered) for rule in group["rules"]]


def write_rules(rendered: Rendered, directory: Path) -> Path:
    path = directory / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule_groups(rendered)}, sort_keys=False))
    return path


def dashboard(rendered: Rendered) -> dict:
    (config_map,) = [o for o in rendered.objects if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-dashboard")]
    return json.loads(config_map["data"]["xray-daemon.json"])


def dashboard_targets(board: dict) -> list[tuple[str, str]]:
    return [(panel["title"], target["expr"]) for panel in board["panels"] for target in panel.get("targets", [])]


# --- promtool ----------------------------------------------------------------------------------


def test_promtool_checks_the_rules(monitored, tmp_path):
    rules = write_rules(monitored, tmp_path)
    result = subprocess.run([promtool(), "check", "rules", str(rules)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerts(monitored))} rules found" in result.stdout
    # The check can fail: a broken expression is refused.
    broken = {"groups": [{"name": "g", "rules": [{"alert": "A", "expr": "rate(x[5m]"}]}]}
    (tmp_path / "broken.yaml").write_text(yaml.safe_dump(broken))
    result = subprocess.run([promtool(), "check", "rules", str(tmp_path / "broken.yaml")], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0


def test_promtool_unit_tests_fire_each_alert_and_keep_it_quiet_otherwise(monitored, tmp_path):
    write_rules(monitored, tmp_path)
    shutil.copy(HERE / "alerts_test.yaml", tmp_path / "alerts_test.yaml")
    result = subprocess.run([promtool(), "test", "rules", "alerts_test.yaml"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    # Every alert the chart defines is fired by some test there.
    tests = load_yaml(HERE / "alerts_test.yaml")["tests"]
    fired = {case["alertname"] for test in tests for case in test["alert_rule_test"] if case["exp_alerts"]}
    assert fired == {rule["alert"] for rule in alerts(monitored)}


def test_alerts_can_be_left_out_and_tuned(full):
    names = [rule["alert"] for rule in alerts(full)]
    assert "XrayDaemonDown" not in names and "XrayDaemonAbsent" in names
    rules = {rule["alert"]: rule for rule in alerts(full)}
    assert rules["XrayDaemonBufferNearlyFull"]["expr"].endswith("> 0.9")
    assert "90 %" in rules["XrayDaemonBufferNearlyFull"]["annotations"]["summary"]
    assert all(rule["labels"]["team"] == "platform" for rule in rules.values())
    assert rules["XrayDaemonAbsent"]["annotations"]["runbook_url"] == "https://wiki.example.com/runbooks/xray-daemon#xraydaemonabsent"


@pytest.fixture(scope="module")
def full() -> Rendered:
    return Rendered(load_yaml(VALUES_ALL))


def test_every_alert_has_a_summary_and_a_runbook_in_the_readme(monitored):
    readme = (CHART / "README.md").read_text()
    headings = {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-") for h in re.findall(r"^#+ (.+)$", readme, re.M)}
    for rule in alerts(monitored):
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], rule["alert"]
        anchor = annotations["runbook_url"].rsplit("#", 1)[1]
        assert anchor == rule["alert"].lower() and anchor in headings, f"no runbook section '### {rule['alert']}' in the README"


# --- the dashboard -----------------------------------------------------------------------------


def test_dashboard_config_map_is_labelled_for_the_grafana_sidecar(monitored, full):
    (config_map,) = [o for o in monitored.objects if o["kind"] == "ConfigMap"]
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["namespace"] == NAMESPACE
    (custom,) = [o for o in full.objects if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-dashboard")]
    assert custom["metadata"]["labels"]["grafana_dashboard_xray"] == "yes"
    assert custom["metadata"]["labels"]["example.com/team"] == "observability"
    assert custom["metadata"]["annotations"] == {"grafana_folder": "Tracing"}
    assert custom["metadata"]["namespace"] == "grafana"


def test_dashboard_covers_what_an_operator_watches(monitored):
    board = dashboard(monitored)
    assert board["uid"] == "xray-daemon"
    titles = {panel["title"] for panel in board["panels"] if panel["type"] != "row"}
    assert titles == {
        "In", "Out", "Spillover and undelivered", "Rejections by reason", "Buffer fill per node", "Buffered records",
        "Backend latency", "Backend errors by class", "Memory per node", "CPU per node",
    }
    exprs = " ".join(expr for _, expr in dashboard_targets(board))
    for needed in ("segments_received_total", "segments_sent_total", "spillover_total", "rejected_total", "buffer_bytes",
                   "backend_request_duration_seconds_bucket", "backend_errors_total", "process_resident_memory_bytes",
                   "process_cpu_seconds_total"):
        assert needed in exprs
    # Every target uses the dashboard's data source variable.
    assert all(panel["datasource"]["uid"] == "${datasource}" for panel in board["panels"] if panel["type"] != "row")


# --- a real Prometheus scraping a real daemon --------------------------------------------------


def queries_of_alerts(rendered: Rendered) -> list[tuple[str, str]]:
    """Each alert's query without its threshold: `Q > N` and `Q == N` give Q, absent(Q) gives Q."""
    out = []
    for rule in alerts(rendered):
        expr = rule["expr"]
        match = re.fullmatch(r"absent\((.*)\)", expr) or re.fullmatch(r"(.*?) (?:>|==) [0-9.]+", expr)
        assert match, f"{rule['alert']}: {expr} is not QUERY > N, QUERY == N or absent(QUERY)"
        out.append((rule["alert"], match.group(1)))
    return out


def dashboard_queries(board: dict, node: str) -> list[tuple[str, str]]:
    variables = {"$__rate_interval": "1m", "$namespace": NAMESPACE, "$node": node}
    out = []
    for title, expr in dashboard_targets(board):
        for name, value in variables.items():
            expr = expr.replace(name, value)
        assert "$" not in expr, f"{title}: unknown variable in {expr}"
        out.append((title, expr))
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]["query"].replace("$namespace", NAMESPACE)
            metric = re.fullmatch(r"label_values\((.*), *\w+\)", query).group(1)
            out.append((f"variable {variable['name']}", metric))
    return out


class FakeXRay(BaseHTTPRequestHandler):
    """Accepts every PutTraceSegments and PutTelemetryRecords call (no signature check)."""

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = b'{"UnprocessedTraceSegments":[]}' if self.path.startswith("/TraceSegments") else b"{}"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def wait_for(what: str, check, seconds: float):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.25)
    pytest.fail(f"timed out after {seconds} s waiting for {what}")


def http_get(url: str) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.read()
    except OSError:
        return None


def daemon_binary() -> Path:
    value = os.environ.get("XRAY_DAEMON_BIN")
    if not value:
        pytest.skip("XRAY_DAEMON_BIN is not set (make test-chart sets it to the static debug build)")
    path = Path(value) if Path(value).is_absolute() else ROOT / value
    assert path.is_file(), f"XRAY_DAEMON_BIN={value}: no such file"
    return path


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory):
    """A daemon under UDP traffic, scraped every second by a real Prometheus; yields query(expr)."""
    binary = daemon_binary()
    prometheus_bin = shutil.which("prometheus")
    assert prometheus_bin, "prometheus is not installed: apt-get install prometheus (make peers does it)"
    work = tmp_path_factory.mktemp("prometheus")
    xray = ThreadingHTTPServer((LOOPBACK, 0), FakeXRay)
    threading.Thread(target=xray.serve_forever, daemon=True).start()
    udp, tcp, web = free_port(), free_port(), free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(work), "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null", "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "fake-secret-for-loopback",
        "XRAY_DAEMON_REGION": "us-east-1", "XRAY_DAEMON_LOCAL_MODE": "true",
        "XRAY_DAEMON_ENDPOINT": f"http://{LOOPBACK}:{xray.server_address[1]}",
        "XRAY_DAEMON_UDP_ADDRESS": f"{LOOPBACK}:{udp}", "XRAY_DAEMON_TCP_ADDRESS": f"{LOOPBACK}:{tcp}",
        "XRAY_DAEMON_TELEMETRY": "false",
    }
    logs = {name: open(work / f"{name}.log", "w") for name in ("daemon", "prometheus")}
    daemon = subprocess.Popen([str(binary)], env=env, stdout=logs["daemon"], stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    # The labels the Prometheus Operator gives a daemon's series (PodMonitor/ServiceMonitor with the
    # chart's node relabeling), so that the alerts' and the dashboard's selectors apply as in a cluster.
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{
            "job_name": f"{RELEASE}-xray-daemon",
            "static_configs": [{"targets": [f"{LOOPBACK}:{tcp}"],
                                "labels": {"namespace": NAMESPACE, "pod": "xray-xray-daemon-abcde", "node": "node-1"}}],
        }],
    }
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    server = subprocess.Popen(
        [prometheus_bin, f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={work / 'data'}",
         f"--web.listen-address={LOOPBACK}:{web}", "--log.level=warn"],
        stdout=logs["prometheus"], stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=work,
    )
    base = f"http://{LOOPBACK}:{web}/api/v1"

    def query(expr: str) -> list:
        answer = http_get(f"{base}/query?" + urllib.parse.urlencode({"query": expr}))
        assert answer is not None, f"Prometheus did not answer {expr}"
        body = json.loads(answer)
        assert body["status"] == "success", body
        return body["data"]["result"]

    try:
        wait_for("the daemon's /metrics", lambda: http_get(f"http://{LOOPBACK}:{tcp}/metrics"), 20)
        wait_for("Prometheus to start", lambda: http_get(f"http://{LOOPBACK}:{web}/-/ready"), 30)
        # Segments (sent to the fake X-Ray, so the backend latency histogram fills), a span, junk.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            for i in range(40):
                segment = {"trace_id": f"1-5f84c7a5-{i:024x}", "id": f"{i:016x}", "name": "chart-test",
                           "start_time": time.time(), "end_time": time.time() + 0.01}
                sender.sendto(b'{"format":"json","version":1}\n' + json.dumps(segment).encode(), (LOOPBACK, udp))
            sender.sendto(b"not a segment", (LOOPBACK, udp))
        wait_for("a scrape that saw the segments sent",
                 lambda: query("max_over_time(up[1m]) == 1") and query("xray_daemon_segments_sent_total > 0"), 30)
        # Two more scrapes, so every rate() has two samples after the traffic.
        time.sleep(2.5)
        yield query
    finally:
        for process in (server, daemon):
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        xray.shutdown()
        for log in logs.values():
            log.close()


def test_every_alert_query_returns_data_from_a_real_daemon(prometheus, monitored):
    empty = [f"{name}: {query}" for name, query in queries_of_alerts(monitored) if not prometheus(query)]
    assert empty == [], "these alert queries return nothing: a metric the daemon does not export?"
    # And the alerts themselves are quiet on a healthy daemon.
    firing = [rule["alert"] for rule in alerts(monitored) if rule["alert"] != "XrayDaemonAbsent" and prometheus(rule["expr"])]
    assert firing == []


def test_every_dashboard_query_returns_data_from_a_real_daemon(prometheus, monitored):
    queries = dashboard_queries(dashboard(monitored), node="node-1")
    empty = [f"{title}: {query}" for title, query in queries if not prometheus(query)]
    assert empty == [], "these dashboard queries return nothing: a metric the daemon does not export?"


def test_a_metric_the_daemon_does_not_export_returns_nothing(prometheus):
    # What makes the two tests above able to fail.
    assert prometheus("rate(xray_daemon_no_such_metric_total[1m])") == []
    assert prometheus("xray_daemon_build_info") != []
