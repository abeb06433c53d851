#!/usr/bin/env bash
# Install Debian/Ubuntu packages quietly with apt-get, as root or through sudo: the shared step
# of the install_* scripts. Usage: scripts/apt_install.sh "<what, for the error>" <apt-get
# install arguments...>
set -euo pipefail

what="$1"
shift
if ! command -v apt-get >/dev/null 2>&1; then
    echo "error: no apt-get here — install $what with your system's package manager" >&2
    exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq "$@" >/dev/null
