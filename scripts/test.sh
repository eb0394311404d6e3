#!/usr/bin/env bash
# Runs the whole test suite: unit tests of every crate, integration tests that boot real
# guests on /dev/kvm, and the expect scripts that drive the monitor as a person would.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh --no-release
# Guests boot one at a time inside each test binary; binaries run one after another.
cargo test --workspace --no-fail-fast -- --test-threads=2
passed=0; failed=0
for t in tests/expect/*.exp; do
    [ -e "$t" ] || continue
    echo "expect: $t"
    if expect "$t" "$(realpath "${CARGO_TARGET_DIR:-target}")/debug/godwit" "$(pwd)/firmware/build/probe.bin"; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
    fi
done
echo "expect: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
