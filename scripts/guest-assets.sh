#!/usr/bin/env bash
# Builds the probe guest and fetches a Debian kernel plus a busybox initramfs carrying the
# virtio modules (Debian builds the whole virtio stack as modules). Idempotent: what is
# already in build/debian is kept. Usage: scripts/guest-assets.sh [--probe-only]
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/build-probe.sh >/dev/null
echo "probe: firmware/build/probe.bin"
[ "${1:-}" = "--probe-only" ] && exit 0

out=build/debian
if [ -s "$out/vmlinuz" ] && [ -s "$out/initrd.img" ]; then
    echo "debian: $out/vmlinuz $out/initrd.img (cached)"
    exit 0
fi

need() { command -v "$1" >/dev/null 2>&1; }
pkg_of() { apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}'; }
kpkg=$(pkg_of)
if [ -z "$kpkg" ]; then
    apt-get update -qq
    kpkg=$(pkg_of)
fi
[ -n "$kpkg" ] || { echo "guest-assets: cannot resolve the Debian kernel package" >&2; exit 1; }
need cpio || apt-get install -y -qq cpio >/dev/null

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"  # apt downloads as the _apt user
(cd "$work" && apt-get download -qq "$kpkg" busybox-static >/dev/null)
mkdir -p "$work/k" "$work/bb"
dpkg-deb -x "$work"/linux-image-*.deb "$work/k"
dpkg-deb -x "$work"/busybox-static_*.deb "$work/bb"

mkdir -p "$out"
cp "$work"/k/boot/vmlinuz-* "$out/vmlinuz.tmp"
kver=$(ls "$work/k/lib/modules")
mods="$work/k/lib/modules/$kver/kernel"

# The initramfs: busybox, the virtio modules in dependency order, and an /init that loads
# them and says so on the serial console.
root="$work/root"
mkdir -p "$root"/{bin,dev,proc,sys,lib/modules}
cp "$work/bb/bin/busybox" "$root/bin/busybox"
for m in drivers/virtio/virtio.ko drivers/virtio/virtio_ring.ko \
         drivers/virtio/virtio_pci_modern_dev.ko drivers/virtio/virtio_pci_legacy_dev.ko \
         drivers/virtio/virtio_pci.ko drivers/block/virtio_blk.ko net/core/failover.ko \
         drivers/net/net_failover.ko drivers/net/virtio_net.ko drivers/char/virtio_console.ko; do
    f="$mods/$m"
    [ -f "$f" ] || f=$(ls "$f".* 2>/dev/null | head -n1 || true)
    [ -n "$f" ] && [ -f "$f" ] && cp "$f" "$root/lib/modules/"
done
cat > "$root/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in virtio virtio_ring virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk failover net_failover virtio_net virtio_console; do
    [ -e /lib/modules/$m.ko ] && insmod /lib/modules/$m.ko
done
echo "GODWIT-INITRAMFS-UP cpus=$(grep -c ^processor /proc/cpuinfo)"
exec setsid cttyhack sh
INIT
chmod +x "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -9) > "$out/initrd.img.tmp"
mv "$out/vmlinuz.tmp" "$out/vmlinuz"
mv "$out/initrd.img.tmp" "$out/initrd.img"
echo "$kver" > "$out/version"
echo "debian: $out/vmlinuz $out/initrd.img ($kver)"
