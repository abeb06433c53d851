#!/usr/bin/env bash
# Install headless Chromium and its WebDriver (Debian packages `chromium` + `chromium-driver`)
# for the report tests in tests/reports/. Safe to rerun: a no-op when both are installed.
# Works as root (CI containers) or through sudo. Debian 12 ships both at the same version;
# Ubuntu's `chromium` package is a snap stub that does not run in containers.
set -euo pipefail

if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    echo "already installed: $(chromium --version 2>/dev/null || echo chromium), $(chromedriver --version)"
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    as_root=()
elif command -v sudo >/dev/null 2>&1; then
    as_root=(sudo)
else
    echo "error: installing chromium needs root — rerun as root or install sudo" >&2
    exit 1
fi

"${as_root[@]}" apt-get update
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium chromium-driver
echo "installed: $(chromium --version), $(chromedriver --version)"
