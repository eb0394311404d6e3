#!/usr/bin/env bash
# Sets up a fresh Debian machine for godwit: installs the Debian packages the project
# uses (QEMU for side-by-side comparison, qemu-utils as the image oracle, expect/socat
# for monitor tests, busybox-static/cpio for the Debian initramfs), builds godwit in
# release mode, and builds the guest assets (probe; Debian kernel + initramfs).
# Usage: scripts/setup.sh [--no-release]
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(qemu-system-x86 qemu-utils expect socat telnet busybox-static cpio binutils gcc python3)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ "${1:-}" != "--no-release" ]; then
    cargo build --release --quiet
    echo "godwit: target/release/godwit"
fi
bash scripts/guest-assets.sh
