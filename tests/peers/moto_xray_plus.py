"""moto server + the two X-Ray sampling operations moto 5.2.5 lacks.

GetSamplingRules (POST /GetSamplingRules) and GetSamplingTargets (POST /SamplingTargets)
are added to moto's own xray backend, so they go through moto's dispatcher and therefore
through moto's SigV4 check when the server runs with INITIAL_NO_AUTH_ACTION_COUNT=N.
Each request to the sampling routes is appended as a JSON line to $PEER_LOG (if set).
Usage: python moto_xray_plus.py -H 127.0.0.1 -p 5002
(From /work/shared/reference/test-peers.md, appendix; bind it to loopback only.)
"""
import json, os, sys, time
import moto.xray.urls as xurls
from moto.xray.responses import XRayResponse

xurls.url_paths["{0}/GetSamplingRules$"] = XRayResponse.dispatch
xurls.url_paths["{0}/SamplingTargets$"] = XRayResponse.dispatch

def _log(self, op):
    path = os.environ.get("PEER_LOG")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"op": op, "path": self.path, "headers": dict(self.headers),
                                "body": self.body if isinstance(self.body, str) else self.body.decode()}) + "\n")

def get_sampling_rules(self):
    _log(self, "GetSamplingRules")
    rule = {"RuleName": "Default", "RuleARN": f"arn:aws:xray:{self.region}:{self.current_account}:sampling-rule/Default",
            "ResourceARN": "*", "Priority": 10000, "FixedRate": 0.05, "ReservoirSize": 1,
            "ServiceName": "*", "ServiceType": "*", "Host": "*", "HTTPMethod": "*", "URLPath": "*",
            "Version": 1, "Attributes": {}}
    return json.dumps({"SamplingRuleRecords": [{"SamplingRule": rule, "CreatedAt": 0.0, "ModifiedAt": 1.0}]})

def sampling_targets(self):
    _log(self, "GetSamplingTargets")
    docs = json.loads(self.body or "{}").get("SamplingStatisticsDocuments", [])
    now = time.time()
    return json.dumps({"SamplingTargetDocuments": [
        {"RuleName": d["RuleName"], "FixedRate": 0.05, "ReservoirQuota": 1, "ReservoirQuotaTTL": now + 10, "Interval": 10}
        for d in docs], "LastRuleModification": 1.0, "UnprocessedStatistics": []})

XRayResponse.get_sampling_rules = get_sampling_rules
XRayResponse.sampling_targets = sampling_targets

from moto.server import main
if __name__ == "__main__":
    main(sys.argv[1:])
