#!/usr/bin/env bash
# Sets up a fresh Debian machine for godwit: installs the Debian packages the project
# uses (QEMU for side-by-side comparison, qemu-utils as the image oracle, expect/socat
# for monitor tests, busybox-static/cpio for the Debian initramfs, libssl-dev and
# pkg-config for the openssl crate that PSK migrations use, libvirt's daemon and virsh
# for the libvirt tests, run with their own configuration), builds godwit in
# release mode, and builds the guest assets (probe; Debian kernel + initramfs).
# Usage: scripts/setup.sh [--no-release]
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(qemu-system-x86 qemu-utils expect socat telnet busybox-static cpio binutils gcc python3 libslirp-dev libglib2.0-dev pkg-config libssl-dev iproute2
    libvirt-daemon-system libvirt-clients)
sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
version_of() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null; }
missing=()
for p in "${packages[@]}"; do
    installed "$p" || missing+=("$p")
done
# qemu-system-x86 and qemu-utils must come from one QEMU release: a machine whose image
# ships a newer qemu-utils would otherwise lose it when apt installs QEMU 7.2 (qemu-img
# is the test oracle). Pin qemu-utils to the version of the qemu-system-x86 apt picks.
if installed qemu-utils && [ "$(version_of qemu-utils)" != "$(version_of qemu-system-x86)" ]; then
    missing+=(qemu-utils)
fi
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    $sudo apt-get update -qq
    qemu_version=$(apt-cache policy qemu-system-x86 | awk '/Candidate:/ {print $2}')
    pinned=()
    for p in "${missing[@]}"; do
        case "$p" in
            qemu-utils|qemu-system-x86) pinned+=("$p=$qemu_version") ;;
            *) pinned+=("$p") ;;
        esac
    done
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --allow-downgrades \
        "${pinned[@]}" >/dev/null
fi
# Every promised tool present, or the set-up fails here rather than a test later.
for p in "${packages[@]}"; do
    installed "$p" || { echo "setup: package $p is missing after installation" >&2; exit 1; }
done
for tool in qemu-system-x86_64 qemu-img qemu-io expect socat telnet cpio gcc python3 ip bridge pkg-config \
    libvirtd virsh; do
    command -v "$tool" >/dev/null || { echo "setup: $tool is missing after installation" >&2; exit 1; }
done
# The openssl crate finds libssl through pkg-config.
pkg-config --exists openssl || { echo "setup: pkg-config does not find openssl (libssl-dev)" >&2; exit 1; }
echo "setup: $(qemu-system-x86_64 --version | head -1); $(qemu-img --version | head -1); libvirt $(libvirtd --version | awk '{print $NF}')"

# The real QMP client (qemu.qmp, with qmp-shell) for the QMP tests and scripts/qmp-compare,
# in a project-local virtualenv: build/qmp-venv/bin/python3.
venv=build/qmp-venv
qmp_version=0.0.6
installed_qmp() { "$venv/bin/python3" -c "import importlib.metadata as m; print(m.version('qemu.qmp'))" 2>/dev/null; }
if [ "$(installed_qmp)" != "$qmp_version" ]; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "qemu.qmp==$qmp_version"
fi
"$venv/bin/python3" -c "from qemu.qmp import QMPClient" || { echo "setup: qemu.qmp does not import" >&2; exit 1; }
[ -x "$venv/bin/qmp-shell" ] || { echo "setup: qmp-shell is missing from $venv" >&2; exit 1; }
echo "setup: qemu.qmp $(installed_qmp) in $venv"

if [ "${1:-}" != "--no-release" ]; then
    cargo build --release --quiet
    echo "godwit: target/release/godwit"
fi
bash scripts/guest-assets.sh
