#!/usr/bin/env bash
# Installs the Debian 12 packages corral's build and tests need, when missing
# (or the packages given as arguments: scripts/bench-deps.sh names etcd).
# As root it runs apt-get; otherwise it prints the exact command and fails.
set -euo pipefail

pkgs=(gcc make meson ninja-build pkg-config libcmocka-dev libuv1-dev
      libjansson-dev libmicrohttpd-dev libgnutls28-dev libinih-dev
      libcurl4-openssl-dev python3 python3-pytest clang-format
      openssl)  # openssl: the TLS tests make their certificates with it
[ $# -gt 0 ] && pkgs=("$@")

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

cmd="apt-get install -y --no-install-recommends ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  echo "corral: missing Debian packages: ${missing[*]}" >&2
  echo "corral: run as root:  apt-get update && $cmd" >&2
  exit 1
fi
echo "corral: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
if ! $cmd >/dev/null; then
  apt-get update >/dev/null
  $cmd >/dev/null
fi
