"""Creates an IAM user with an allow-all policy + access key on a moto server started with
INITIAL_NO_AUTH_ACTION_COUNT=3 (these 3 IAM calls are the unauthenticated ones).

usage: python moto_bootstrap_key.py http://127.0.0.1:PORT   -> prints shell exports
As a module: bootstrap(endpoint) -> (access_key_id, secret_access_key).
(From /work/shared/reference/test-peers.md, appendix.)
"""
import json
import sys

import boto3


def bootstrap(endpoint):
    iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1",
                       aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
    iam.create_user(UserName="daemon")
    iam.put_user_policy(UserName="daemon", PolicyName="all", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
    k = iam.create_access_key(UserName="daemon")["AccessKey"]
    return k["AccessKeyId"], k["SecretAccessKey"]


if __name__ == "__main__":
    ep = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:5001"
    ak, sk = bootstrap(ep)
    print(f"export AWS_ACCESS_KEY_ID={ak} AWS_SECRET_ACCESS_KEY={sk}")
