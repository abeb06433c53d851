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
bash "$(dirname "$0")/apt_install.sh" "podman (or Docker) and debootstrap" \
    --no-install-recommends podman runc debootstrap uidmap fuse-overlayfs slirp4netns
command -v podman >/dev/null 2>&1 || { echo "error: podman installed but not found" >&2; exit 1; }
echo "podman, runc and debootstrap installed"
