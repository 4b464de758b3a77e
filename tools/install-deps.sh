#!/usr/bin/env bash
# Installs the system packages stoker builds with (Debian/Ubuntu): cmake and nasm build the
# bundled libjpeg-turbo (with its SIMD code); libhdf5-dev is the HDF5 library (found by
# pkg-config); python3 with venv runs the Python package's tests. Safe to run again; needs root
# or sudo.
set -euo pipefail
pkgs=(cmake nasm pkg-config libhdf5-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# The Python package's tests build it in a virtual environment (python3 >= 3.11 with venv).
if ! python3 -c 'import sys, venv, ensurepip; assert sys.version_info >= (3, 11)' 2>/dev/null; then
  missing+=(python3 python3-venv)
fi
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
echo "installing: ${missing[*]}" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
