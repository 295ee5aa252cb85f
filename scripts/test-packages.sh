#!/usr/bin/env bash
# The Debian packages the tests run (`npm test` calls this first): Chromium for the status page's
# browser test, promtool (prometheus) for the alert rules, kubectl (kubernetes-client) for the Kubernetes manifests,
# openssl for the mTLS certificates. Installs what is missing with apt-get when run as root;
# otherwise names the missing packages and fails (a test never skips itself for a missing tool).
set -euo pipefail

# command -> Debian package
declare -A NEEDED=(
  [chromium]=chromium
  [promtool]=prometheus
  # Debian's kubectl is in kubernetes-client (bookworm: 1.20, its kustomize renders
  # deploy/kubernetes; test/e2e/deploy-kubernetes.test.ts). A kubectl already on PATH (another
  # vendor's package, a newer release) is used as it is.
  [kubectl]=kubernetes-client
  [openssl]=openssl
)

missing=()
for cmd in "${!NEEDED[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${NEEDED[$cmd]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "the tests need these Debian packages: ${missing[*]}" >&2
  echo "install them with: sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
  exit 1
fi
echo "installing Debian packages for the tests: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
for cmd in "${!NEEDED[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || { echo "still missing after apt-get: $cmd (package ${NEEDED[$cmd]})" >&2; exit 1; }
done
