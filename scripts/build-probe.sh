#!/usr/bin/env bash
# Build the probe guest (firmware/probe/*.S) into firmware/build/probe.bin,
# a bzImage (see docs/probe.md).  Rebuilds only when a source, the linker
# script or this script is newer than the output; always prints the output
# path on stdout.  Needs GNU as, ld and objcopy.  Safe to run concurrently:
# objects go to a private temporary directory and outputs are renamed into
# place.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
src="$root/firmware/probe"
out_dir="$root/firmware/build"
out="$out_dir/probe.bin"

stale=0
if [[ ! -f "$out" ]]; then
	stale=1
else
	for f in "$src"/*.S "$src"/*.inc "$src/probe.ld" "${BASH_SOURCE[0]}"; do
		if [[ "$f" -nt "$out" ]]; then
			stale=1
			break
		fi
	done
fi

if [[ $stale -eq 1 ]]; then
	mkdir -p "$out_dir"
	tmp="$(mktemp -d "$out_dir/.probe-build.XXXXXX")"
	trap 'rm -rf "$tmp"' EXIT
	objs=()
	for s in "$src"/*.S; do
		o="$tmp/$(basename "${s%.S}").o"
		as --64 -I "$src" -o "$o" "$s"
		objs+=("$o")
	done
	ld -nostdlib -static -z noexecstack --no-relax --no-warn-rwx-segments \
		-T "$src/probe.ld" -Map "$tmp/probe.map" -o "$tmp/probe.elf" "${objs[@]}"
	objcopy -O binary "$tmp/probe.elf" "$tmp/probe.bin"
	# probe.elf/probe.map are kept for debugging (symbols, addresses).
	mv -f "$tmp/probe.elf" "$out_dir/probe.elf"
	mv -f "$tmp/probe.map" "$out_dir/probe.map"
	mv -f "$tmp/probe.bin" "$out"
fi

echo "$out"
