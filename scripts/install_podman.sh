#!/usr/bin/env bash
# Install podman, runc and debootstrap (Debian/Ubuntu packages) unless they are already here.
# Used by CI before the image tests (tests/image): `make image BASE=debootstrap` builds the
# image offline with them. No-op when all three exist.
set -euo pipefail

if command -v podman >/dev/null 2>&1 && command -v runc >/dev/null 2>&1 \
    && command -v debootstrap >/dev/null 2>&1; then
    echo "podman, runc and debootstrap already installed"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "error: no apt-get here — install podman (or Docker) and debootstrap with your" \
        "system's package manager" >&2
    exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends podman runc debootstrap uidmap \
    fuse-overlayfs slirp4netns >/dev/null
command -v podman >/dev/null 2>&1 || { echo "error: podman installed but not found" >&2; exit 1; }
echo "podman, runc and debootstrap installed"
