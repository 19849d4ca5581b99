"""Read traces back from an X-Ray endpoint (moto) and print them.

usage: read_traces.py ENDPOINT TRACE_ID [TRACE_ID ...]
  e.g. target/venv/bin/python tests/peers/read_traces.py http://127.0.0.1:4566 1-6b070aa8-0123456789abcdef01234567
Credentials and region come from the usual AWS environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
AWS_REGION, default us-east-1); tests/peers/run_local.sh prints the exact command with the key it created.
Prints one line per stored document: TRACE_ID <tab> DOCUMENT (the raw string X-Ray stored), then the ids
that were not found. Exit code 0 if every trace was found, 1 otherwise.
"""
import os
import sys

import boto3


def main(argv):
    if len(argv) < 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    endpoint, trace_ids = argv[1], argv[2:]
    client = boto3.client("xray", endpoint_url=endpoint,
                          region_name=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1")
    found, missing = 0, []
    for i in range(0, len(trace_ids), 5):  # BatchGetTraces takes at most 5 ids per call
        kwargs = {"TraceIds": trace_ids[i:i + 5]}
        for _ in range(100):  # bounded pagination
            out = client.batch_get_traces(**kwargs)
            for trace in out.get("Traces", []):
                for seg in trace.get("Segments", []):
                    print(f"{trace['Id']}\t{seg['Document']}")
                    found += 1
            missing.extend(out.get("UnprocessedTraceIds", []))
            if not out.get("NextToken"):
                break
            kwargs["NextToken"] = out["NextToken"]
    for tid in missing:
        print(f"not found: {tid}", file=sys.stderr)
    print(f"{found} document(s) in {len(trace_ids) - len(missing)} of {len(trace_ids)} trace(s)", file=sys.stderr)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
