"""The chart README's Parameters tables are generated from values.yaml, and are current.

Bitnami's readme-generator-for-helm (pinned in tests/chart/package.json, installed into
target/node-chart by tests/e2e/setup.sh) writes the tables under "## Parameters" from the
`## @section` / `## @param` comments in values.yaml; `make chart-docs` runs it in place. Here it runs
on copies in a temporary directory, and the checked-in README must be exactly what it writes: a
stale table fails with the diff. values.schema.json is hand-written (the generator's schema would
not be strict: see the README's contributor note), so only the README is compared.
"""

import difflib
import re
import shutil
import subprocess
from pathlib import Path

from test_chart import CHART, DAEMON_ENV, ROOT, leaves, load_yaml

GENERATOR = ROOT / "target" / "node-chart" / "node_modules" / "@bitnami" / "readme-generator-for-helm" / "bin" / "index.js"
# A row of a Parameters table: | `name` | description | `value` |
ROW = re.compile(r"^\| `(?P<name>[^`]+)` +\| (?P<description>.*?) +\| (?P<value>`.*`)? *\|$")


def generate(directory: Path, values: str | None = None) -> subprocess.CompletedProcess:
    """Runs the generator on copies of README.md and values.yaml (or the given values text) in directory."""
    node = shutil.which("node")
    assert node, "node is not installed (tests/e2e/setup.sh needs it too)"
    assert GENERATOR.exists(), f"{GENERATOR} is missing: make peers (tests/e2e/setup.sh) installs it"
    shutil.copy(CHART / "README.md", directory / "README.md")
    (directory / "values.yaml").write_text(values if values is not None else (CHART / "values.yaml").read_text())
    return subprocess.run(
        [node, str(GENERATOR), "--values", str(directory / "values.yaml"), "--readme", str(directory / "README.md")],
        capture_output=True, text=True, timeout=60,
    )


def parameter_rows(readme: str) -> dict[str, str]:
    """name -> the whole row, for each row of the tables under "## Parameters"."""
    section = readme.split("\n## Parameters\n", 1)[1].split("\n## ", 1)[0]
    return {m["name"]: m[0] for line in section.splitlines() if (m := ROW.match(line))}


def test_readme_parameters_are_what_values_yaml_generates(tmp_path):
    result = generate(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    checked_in = (CHART / "README.md").read_text()
    generated = (tmp_path / "README.md").read_text()
    diff = "".join(difflib.unified_diff(
        checked_in.splitlines(keepends=True), generated.splitlines(keepends=True),
        "helm/xray-daemon/README.md (checked in)", "helm/xray-daemon/README.md (generated)",
    ))
    assert not diff, "the README's Parameters tables are stale: run `make chart-docs` and commit\n" + diff


def test_a_changed_description_changes_the_readme(tmp_path):
    """The comparison above can fail: a new description in values.yaml is a new row in the README."""
    values = (CHART / "values.yaml").read_text()
    changed = values.replace("## @param hostPorts.udp Node port for UDP", "## @param hostPorts.udp The UDP port on the node", 1)
    assert changed != values
    result = generate(tmp_path, changed)
    assert result.returncode == 0, result.stdout + result.stderr
    row = parameter_rows((tmp_path / "README.md").read_text())["hostPorts.udp"]
    assert "The UDP port on the node" in row and row not in (CHART / "README.md").read_text()


def test_a_value_without_its_param_comment_is_refused(tmp_path):
    """The generator refuses a values.yaml with an undocumented value, naming it."""
    values = (CHART / "values.yaml").read_text() + "\nundocumentedValue: 1\n"
    result = generate(tmp_path, values)
    assert result.returncode != 0
    assert "Missing metadata for key: undocumentedValue" in result.stdout + result.stderr


def test_each_row_names_the_variable_its_value_sets():
    """The tables keep what the README's former "variable" column said, at the start of each description."""
    rows = parameter_rows((CHART / "README.md").read_text())
    expected = {f"daemon.{key}": variable for key, variable in DAEMON_ENV.items()} | {
        "region": "XRAY_DAEMON_REGION` and `AWS_REGION",
        "roleArn": "XRAY_DAEMON_ROLE_ARN",
        "otlp.enabled": "XRAY_DAEMON_OTLP_ADDRESS=0.0.0.0:<port>",
        "otlp.grpc.enabled": "XRAY_DAEMON_OTLP_GRPC_ADDRESS=0.0.0.0:<port>",
        "spool.enabled": "XRAY_DAEMON_SPOOL_DIR",
        "spool.maxMB": "XRAY_DAEMON_SPOOL_MAX_MB",
        "config.enabled": "-c /etc/amazon/xray/cfg.yaml",
    }
    wrong = {name: rows.get(name) for name, variable in expected.items()
             if not re.match(rf"\| `{re.escape(name)}` +\| `{re.escape(variable)}`", rows.get(name, ""))}
    assert wrong == {}


def test_readme_documents_every_value():
    """Every value is a row of the Parameters tables: a key documented as a whole, or each of its keys."""
    readme = (CHART / "README.md").read_text()
    rows = parameter_rows(readme)
    missing = [".".join(path) for path, _ in leaves(load_yaml(CHART / "values.yaml"), rows.__contains__)
               if ".".join(path) not in rows]
    assert missing == []
    assert "helm install xray-daemon ./helm/xray-daemon --set region=us-east-1" in readme
