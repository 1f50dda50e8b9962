#!/usr/bin/env bash
# Builds capsa-shim statically linked and puts it beside capsa-runtime (target/<profile>/).
#
# Why: capsa-runtime execs the shim from a descriptor inside the container, after pivot_root, so
# the kernel looks for a dynamic binary's interpreter (/lib64/ld-linux-*.so) and libraries in the
# container's rootfs, which need not have them. A static shim runs in any rootfs, even one that
# holds only the module. `cargo build` alone makes a dynamic shim, which capsa-runtime refuses with
# a message pointing here; the shim's [[bin]] needs the `binary` feature, so plain cargo builds do
# not make one at all.
#
# It is also position-dependent (`relocation-model=static`: a static non-PIE, where a static-pie
# relocates ~16,000 pointers before main at every container start: 148 page faults for a hello
# module's run against 107, measured with perf stat; see bench/README.md).
#
# The shim is built alone (`-p capsa-shim`), so cargo does not unify the host's features into it:
# it has wasmtime's runtime only, no Cranelift (checked below). `--target` keeps the static flag
# off build scripts and proc-macros, and keeps this build out of target/<profile>'s own units.
#
# Usage: scripts/build-shim.sh [--release]
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

profile=debug
cargo_profile=()
case ${1:-} in
    --release) profile=release cargo_profile=(--release) ;;
    "") ;;
    *) echo "build-shim.sh: unknown argument ${1} (usage: build-shim.sh [--release])" >&2; exit 2 ;;
esac

host=$(rustc -vV | sed -n 's/^host: //p')
target_dir=$(cargo metadata --format-version 1 --no-deps | jq -r .target_directory)
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static -C relocation-model=static" \
    cargo build "${cargo_profile[@]}" -p capsa-shim --bin capsa-shim --features binary --target "$host"

built=$target_dir/$host/$profile/capsa-shim
# (Outputs are captured first: with pipefail, `tool | grep -q` can fail on SIGPIPE after a match.)
headers=$(readelf -lW "$built")
if grep -q 'Requesting program interpreter' <<<"$headers"; then
    echo "build-shim.sh: $built is still dynamically linked" >&2
    exit 1
fi
elf_header=$(readelf -hW "$built")
if ! grep -q 'Type: *EXEC' <<<"$elf_header"; then
    echo "build-shim.sh: $built is position-independent (expected a static non-PIE executable)" >&2
    exit 1
fi
# wasmtime's runtime uses cranelift's data-structure crates (cranelift_entity, _bforest); the
# compiler itself is cranelift_codegen, which must not be there.
symbols=$(nm "$built")
if grep -q cranelift_codegen <<<"$symbols"; then
    echo "build-shim.sh: $built contains Cranelift's code generator; the shim must never compile" >&2
    exit 1
fi
mkdir -p "$target_dir/$profile"
# A rename, not a copy over the file: an older cargo-built capsa-shim there may be a hard link to
# a build output, which must not be overwritten in place.
install -m 0755 "$built" "$target_dir/$profile/.capsa-shim.tmp"
mv -f "$target_dir/$profile/.capsa-shim.tmp" "$target_dir/$profile/capsa-shim"
echo "build-shim.sh: static capsa-shim ($(du -h "$built" | cut -f1)) at $target_dir/$profile/capsa-shim"
