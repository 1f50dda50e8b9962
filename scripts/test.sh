#!/usr/bin/env bash
# capsa's whole test suite. Runs as root (the end-to-end tests make real containers).
#
# Builds every binary once, so the end-to-end tests find target/debug/capsa-runtime and friends
# beside their own executable, then runs every test of the workspace: with cargo-nextest when it is
# installed (one process per test), else with cargo test. Doc tests run with cargo test either way,
# before the other tests. Then scripts/v2-lane.sh runs the cgroup tests again in a VM whose kernel
# has only cgroup v2 (CAPSA_SKIP_V2_LANE=1 skips it). All of them always run; the exit code is the
# first failure's.
# Extra arguments go to the test runner (e.g. a nextest filter: -E 'test(callers)').
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

if [[ $(id -u) -ne 0 ]]; then
    echo "test.sh: must run as root" >&2
    exit 1
fi

echo "test.sh: cargo build --workspace --bins"
cargo build --workspace --bins
# capsa-runtime execs the shim inside the container's rootfs, so it must be static (see the script).
echo "test.sh: scripts/build-shim.sh (a static capsa-shim beside capsa-runtime)"
bash scripts/build-shim.sh

status=0
if cargo nextest --version >/dev/null 2>&1; then
    # Doc tests first, so that the run closes on nextest's summary of the real tests.
    echo "test.sh: cargo test --workspace --doc"
    cargo test --workspace --doc || status=$?
    echo "test.sh: cargo nextest run --workspace"
    cargo nextest run --workspace --no-fail-fast "$@" || status=$((status ? status : $?))
else
    echo "test.sh: cargo test --workspace"
    cargo test --workspace --no-fail-fast "$@" || status=$?
fi
# This host's cgroups are hybrid (v1 + v2); the cgroup tests run again on a pure v2 kernel.
echo "test.sh: scripts/v2-lane.sh (cgroup and lifecycle tests on a pure cgroup v2 kernel, in qemu)"
bash scripts/v2-lane.sh || status=$((status ? status : $?))
exit "$status"
