"""End to end: real X-Ray SDKs -> the daemon (UDP) -> moto's X-Ray API with SigV4 verification -> boto3.

Every document the SDK put on the wire must come back from BatchGetTraces byte for byte, exactly once.
"""
import collections
import json
import os
import time

import pytest
from botocore.exceptions import ClientError

from conftest import HEADER, LOOPBACK

UPLOAD_TIMEOUT = 15  # s; a partial batch goes out ~1 s after its first segment


def make_segment(name):
    now = time.time()
    trace_id = "1-%08x-%s" % (int(now), os.urandom(12).hex())
    doc = json.dumps({"trace_id": trace_id, "id": os.urandom(8).hex(), "name": name,
                      "start_time": round(now - 0.01, 6), "end_time": round(now, 6)}, separators=(",", ":"))
    return trace_id, doc


def bodies_by_trace(capture, daemon):
    """{trace_id: [body, ...]} of what the SDK sent; checks every datagram went to the daemon intact."""
    out = collections.defaultdict(list)
    assert capture["datagrams"], "the SDK sent nothing"
    for i, dg in enumerate(capture["datagrams"]):
        assert dg["error"] is None, f"datagram {i}: the SDK reported a send error: {dg['error']}"
        assert (dg["ip"], int(dg["port"])) == (LOOPBACK, daemon.udp_port), f"datagram {i} went to {dg['ip']}:{dg['port']}"
        header, sep, body = dg["data"].partition("\n")
        assert sep and header == HEADER, f"datagram {i}: unexpected framing {dg['data'][:80]!r}"
        out[json.loads(body)["trace_id"]].append(body)
    return dict(out)


def docs_named(bodies, name):
    return [json.loads(b) for docs in bodies.values() for b in docs if json.loads(b)["name"] == name]


def names_of(subsegments):
    return {s["name"] for s in subsegments}


def assert_streamed_big_segment(bodies, seg_name, n_subs):
    """The 'big' segment: some subsegments were streamed as their own documents, the rest embedded;
    together exactly s0..s{n-1}."""
    [big] = docs_named(bodies, seg_name)
    streamed = [json.loads(b) for b in bodies[big["trace_id"]] if json.loads(b).get("type") == "subsegment"]
    assert streamed, f"the SDK streamed no subsegment of {seg_name}: the test does not exercise streaming"
    for s in streamed:
        assert s["parent_id"] == big["id"] and s["trace_id"] == big["trace_id"]
    embedded = big.get("subsegments", [])
    assert len(streamed) + len(embedded) == n_subs
    assert names_of(streamed) | names_of(embedded) == {f"s{i}" for i in range(n_subs)}
    return len(streamed)


def assert_small_segment(bodies, seg_name):
    """Segment with 3 subsegments: sub-a (with sub-a-nested) and sub-err (with an exception 'boom')."""
    [seg] = docs_named(bodies, seg_name)
    subs = {s["name"]: s for s in seg["subsegments"]}
    assert set(subs) == {"sub-a", "sub-err"}
    assert names_of(subs["sub-a"]["subsegments"]) == {"sub-a-nested"}
    assert subs["sub-err"]["fault"] is True
    assert [e["message"] for e in subs["sub-err"]["cause"]["exceptions"]] == ["boom"]


def assert_stored_byte_for_byte(expected, stored):
    problems = []
    for tid, docs in expected.items():
        want = collections.Counter(d.encode("utf-8") for d in docs)
        got = collections.Counter(d.encode("utf-8") for d in stored.get(tid, []))
        for doc, n in (want - got).items():
            problems.append(f"trace {tid}: missing {n}x {doc[:160]!r}")
        for doc, n in (got - want).items():
            problems.append(f"trace {tid}: unexpected/duplicate {n}x {doc[:160]!r}")
    assert not problems, f"{len(problems)} difference(s) between what the SDK sent and what X-Ray stored:\n" + \
        "\n".join(problems[:20])


def assert_clean_shutdown(daemon, n_sent):
    """Daemon alive after the traffic; SIGTERM -> exit 0 within 5 s; success lines account for every segment."""
    assert daemon.alive(), f"the daemon died during the test (rc {daemon.proc.returncode})"
    rc = daemon.terminate(timeout=5)
    assert rc is not None, "the daemon did not exit within 5 s of SIGTERM"
    assert rc == 0, f"the daemon exited with {rc} after SIGTERM"
    counts = daemon.success_counts()
    assert counts, "no line '<time>Z [Info] Successfully sent batch of N segments (S.SSS seconds)' in the log"
    assert sum(counts) == n_sent, f"success lines report {counts} segments, the SDK sent {n_sent}"
    errors = [line for line in daemon.lines() if "[Error]" in line]
    assert not errors, "error lines in the daemon log:\n" + "\n".join(errors)


def roundtrip(moto, daemon, capture):
    expected = bodies_by_trace(capture, daemon)
    stored = moto.wait_for_documents(expected, timeout=UPLOAD_TIMEOUT)
    assert_stored_byte_for_byte(expected, stored)
    return expected


# --------------------------------------------------------------------------------------------------

def test_moto_verifies_signatures(moto):
    """The peer really checks SigV4: the right key reads, a wrong secret gets 403 SignatureDoesNotMatch."""
    moto.xray.batch_get_traces(TraceIds=["1-00000000-000000000000000000000001"])
    with pytest.raises(ClientError) as e:
        moto.client(secret_key="wrong" + moto.secret_key[5:]).batch_get_traces(
            TraceIds=["1-00000000-000000000000000000000001"])
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert "SignatureDoesNotMatch" in str(e.value)


def test_python_sdk_through_daemon_byte_for_byte(moto, daemon_factory, emit_python):
    daemon = daemon_factory()
    capture = emit_python(daemon.udp_port)
    assert capture["sdk_version"] == "2.15.0"

    expected = roundtrip(moto, daemon, capture)
    assert len(expected) == 2, f"expected 2 traces (py-seg, py-big), got {len(expected)}"
    assert_small_segment(expected, "py-seg")
    streamed = assert_streamed_big_segment(expected, "py-big", 35)
    assert streamed >= 30, f"the Python SDK streamed only {streamed} of 35 subsegments"

    assert_clean_shutdown(daemon, len(capture["datagrams"]))
    # after the shutdown flush: still exactly the same documents, nothing duplicated
    assert_stored_byte_for_byte(expected, moto.documents(expected))


def test_node_sdk_through_daemon_byte_for_byte(moto, daemon_factory, emit_node):
    daemon = daemon_factory()
    capture = emit_node(daemon.udp_port)
    assert capture["sdk_version"] == "3.12.0"
    assert capture["unfinished_sends"] == 0

    expected = roundtrip(moto, daemon, capture)
    assert len(expected) == 2, f"expected 2 traces (node-seg, node-big), got {len(expected)}"
    assert_small_segment(expected, "node-seg")
    assert_streamed_big_segment(expected, "node-big", 105)

    assert_clean_shutdown(daemon, len(capture["datagrams"]))
    assert_stored_byte_for_byte(expected, moto.documents(expected))


def test_sigterm_flushes_pending_segments(moto, daemon_factory):
    """Segments received but not yet uploaded when SIGTERM arrives are uploaded before exit."""
    daemon = daemon_factory()
    trace_id, doc = make_segment("flush-on-sigterm")
    daemon.send(f"{HEADER}\n{doc}")
    # Let the daemon read the datagram from the socket (datagrams still in the kernel queue at
    # shutdown may be lost, as upstream) but SIGTERM well before the ~1 s partial-batch timer.
    time.sleep(0.3)
    assert_clean_shutdown(daemon, 1)
    assert_stored_byte_for_byte({trace_id: [doc]}, moto.documents([trace_id]))


def test_wrong_secret_is_rejected_and_nothing_stored(moto, daemon_factory):
    """Negative control: the same verifying moto, a daemon with a wrong secret key -> its upload is
    refused (403 SignatureDoesNotMatch) and the segment is not readable. Proves the byte-for-byte
    checks above can fail."""
    wrong = moto.secret_key[::-1]
    assert wrong != moto.secret_key
    daemon = daemon_factory(secret_key=wrong)
    trace_id, doc = make_segment("wrong-secret")
    daemon.send(f"{HEADER}\n{doc}")

    # The daemon logs each refused attempt as
    #   [Warn] Sending segment batch failed with: service error: ... StatusCode(403) ... SignatureDoesNotMatch ...
    # and, when its retries are used up, an [Error] line; accept either level.
    err = daemon.wait_for_line(r"\[(?:Warn|Error)\] .*(?:403|SignatureDoesNotMatch)", timeout=UPLOAD_TIMEOUT)
    assert err, "the daemon logged no error line with 403/SignatureDoesNotMatch for its refused upload"
    time.sleep(2)  # let the daemon's quick retries of the refused batch run out too
    assert not daemon.success_counts(), "the daemon claims success with a wrong secret key"
    assert daemon.alive(), "a refused upload must not kill the daemon"

    resp = moto.xray.batch_get_traces(TraceIds=[trace_id])
    assert resp["Traces"] == [], f"segment uploaded with a wrong secret was stored: {resp['Traces']}"
    assert resp["UnprocessedTraceIds"] == [trace_id]
