#!/usr/bin/env bash
# Publishes the Lambda layer zips to AWS Lambda in each region, and prints one ARN a line.
# This PUBLISHES (the release workflow runs it on a version tag); `make dist` never does.
#
#   extension/publish_layer.sh [--public] [--name NAME] --version VERSION --regions "us-east-1 eu-west-1" \
#       x86_64=dist/xray-daemon-layer-VERSION-x86_64.zip arm64=dist/xray-daemon-layer-VERSION-arm64.zip
#
# Per region and zip: `aws lambda publish-layer-version` of layer NAME-ARCH (default
# xray-daemon-x86_64, xray-daemon-arm64) with that compatible architecture and the runtimes in
# $LAYER_RUNTIMES (an extension runs beside any runtime; Lambda takes at most 15), licence
# Apache-2.0. With --public, `aws lambda add-layer-version-permission` lets every account use the
# version (lambda:GetLayerVersion for principal *). Credentials and the AWS CLI as for any `aws`
# command. stdout: the layer version ARNs, one a line; progress goes to stderr.
set -euo pipefail

runtimes_default="nodejs20.x nodejs22.x python3.11 python3.12 python3.13 java17 java21 dotnet8 ruby3.3 ruby3.4 provided.al2 provided.al2023"
runtimes=${LAYER_RUNTIMES:-$runtimes_default}
name=xray-daemon public=false version="" regions=""
zips=()

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --public) public=true ;;
        --name) name=${2:?--name needs a value}; shift ;;
        --version) version=${2:?--version needs a value}; shift ;;
        --regions) regions=${2:?--regions needs a value}; shift ;;
        -h | --help) usage ;;
        x86_64=* | arm64=*) zips+=("$1") ;;
        *) echo "publish_layer: unknown argument $1 (x86_64=ZIP or arm64=ZIP, see --help)" >&2; exit 2 ;;
    esac
    shift
done
[[ -n "$version" ]] || { echo "publish_layer: --version is required" >&2; exit 2; }
[[ -n "${regions// /}" ]] || { echo "publish_layer: --regions is required (e.g. \"us-east-1 eu-west-1\")" >&2; exit 2; }
[[ ${#zips[@]} -gt 0 ]] || { echo "publish_layer: no zip given (x86_64=ZIP arm64=ZIP)" >&2; exit 2; }
for spec in "${zips[@]}"; do
    [[ -f "${spec#*=}" ]] || { echo "publish_layer: no zip at ${spec#*=} (make dist)" >&2; exit 1; }
done

read -r -a runtime_list <<< "$runtimes"
read -r -a region_list <<< "$regions"
for region in "${region_list[@]}"; do
    for spec in "${zips[@]}"; do
        arch=${spec%%=*} zip=${spec#*=}
        layer="$name-$arch"
        echo "publish_layer: $layer $version in $region from $zip" >&2
        read -r arn number < <(aws lambda publish-layer-version --region "$region" --layer-name "$layer" \
            --description "xray-daemon $version ($arch): the AWS X-Ray daemon as a Lambda extension" \
            --license-info Apache-2.0 --zip-file "fileb://$zip" \
            --compatible-architectures "$arch" --compatible-runtimes "${runtime_list[@]}" \
            --query '[LayerVersionArn, Version]' --output text)
        [[ "$arn" == arn:* && "$number" =~ ^[0-9]+$ ]] \
            || { echo "publish_layer: unexpected answer from publish-layer-version: '$arn $number'" >&2; exit 1; }
        if [[ "$public" == true ]]; then
            aws lambda add-layer-version-permission --region "$region" --layer-name "$layer" \
                --version-number "$number" --statement-id public --action lambda:GetLayerVersion \
                --principal '*' --output text > /dev/null
        fi
        echo "$arn"
    done
done
