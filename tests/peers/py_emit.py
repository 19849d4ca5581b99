"""Emit real segments/subsegments with the Python aws-xray-sdk to AWS_XRAY_DAEMON_ADDRESS.

Outside Lambda:   AWS_XRAY_DAEMON_ADDRESS=127.0.0.1:2000 python py_emit.py [--capture FILE] [seconds_for_sampling=0]
Lambda emulation: LAMBDA_TASK_ROOT=/var/task _X_AMZN_TRACE_ID='Root=1-...;Parent=...;Sampled=1' python py_emit.py

Traffic (outside Lambda):
  1. segment "py-seg" with 3 subsegments (one nested, one with an exception), sent as one datagram;
  2. segment "py-big" with 35 sequential subsegments: the SDK streams completed subsegments as separate
     datagrams once more than streaming_threshold (30) are done, so this yields ~31 subsegment datagrams
     plus the segment itself.
With --capture FILE, every datagram the SDK hands to its UDP socket is recorded (by wrapping
UDPEmitter._send_data, then calling the original) and written to FILE as JSON:
  {"sdk": "python", "sdk_version": ..., "daemon_address": ..., "datagrams": [{"data": str, "ip", "port", "error"}]}
Adapted from /work/shared/reference/test-peers.md, appendix.
"""
import argparse
import json
import os
import sys
import time

from aws_xray_sdk.version import VERSION as SDK_VERSION
from aws_xray_sdk.core import xray_recorder
from aws_xray_sdk.core.emitters.udp_emitter import UDPEmitter

ap = argparse.ArgumentParser()
ap.add_argument("--capture", help="write every datagram sent to this JSON file")
ap.add_argument("seconds", nargs="?", type=float, default=0.0,
                help="keep the centralized sampler busy this long (its pollers call the daemon's TCP address)")
args = ap.parse_args()

captured = []
_original_send_data = UDPEmitter._send_data


def _capturing_send_data(self, data):
    entry = {"data": data, "ip": self._ip, "port": self._port, "error": None}
    captured.append(entry)
    try:
        _original_send_data(self, data)
    except Exception as e:  # the SDK logs and swallows it; keep it visible in the capture
        entry["error"] = repr(e)
        raise


UDPEmitter._send_data = _capturing_send_data


def write_capture():
    if args.capture:
        cache = getattr(xray_recorder.sampler, "_cache", None)
        rules = [{"name": r.name, "rate": r.rate, "priority": r.priority,
                  "reservoir_quota": getattr(r.reservoir, "_quota", None)}
                 for r in (cache.rules if cache else [])]
        out = {"sdk": "python", "sdk_version": SDK_VERSION,
               "daemon_address": os.environ.get("AWS_XRAY_DAEMON_ADDRESS"), "datagrams": captured,
               "sampling_rules": rules}
        with open(args.capture + ".tmp", "w") as f:
            json.dump(out, f)
        os.replace(args.capture + ".tmp", args.capture)


xray_recorder.configure(service="py-peer", context_missing="LOG_ERROR")  # daemon address from env

if os.environ.get("LAMBDA_TASK_ROOT"):
    # In Lambda the SDK never opens a segment: subsegments hang off the facade segment from _X_AMZN_TRACE_ID
    with xray_recorder.in_subsegment("lambda-sub-1") as s:
        s.put_annotation("k", "v")
        with xray_recorder.in_subsegment("lambda-sub-nested"):
            time.sleep(0.01)
    with xray_recorder.in_subsegment("lambda-sub-2"):
        pass
    write_capture()
    sys.exit(0)

# 1) one sampled segment with 3 subsegments (one nested, one with an exception)
seg = xray_recorder.begin_segment("py-seg", sampling=1)
seg.put_annotation("peer", "python")
seg.put_metadata("m", {"a": 1})
with xray_recorder.in_subsegment("sub-a"):
    with xray_recorder.in_subsegment("sub-a-nested"):
        time.sleep(0.01)
try:
    with xray_recorder.in_subsegment("sub-err"):
        raise ValueError("boom")
except ValueError:
    pass
xray_recorder.end_segment()

# 2) a segment with 35 subsegments: the SDK streams completed subsegments once > streaming_threshold (30)
xray_recorder.begin_segment("py-big", sampling=1)
for i in range(35):
    with xray_recorder.in_subsegment(f"s{i}"):
        pass
xray_recorder.end_segment()

# 3) optional: drive the centralized sampler so its pollers call GetSamplingRules / SamplingTargets over TCP
end = time.time() + min(args.seconds, 120)
while time.time() < end:
    xray_recorder.sampler.should_trace({"service": "py-peer", "host": "h", "method": "GET", "path": "/"})
    time.sleep(0.2)

write_capture()
