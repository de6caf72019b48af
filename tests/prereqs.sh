# shellcheck shell=bash
# Sourced by tests/run, tests/up and .ci/run: installs what a fresh Debian
# machine lacks to build and test skiff, and only that.
#   libclang-dev  RocksDB's Rust bindings are generated with libclang
#   g++           RocksDB itself is C++ (normally there already)
#   libc6-dev     the static libc skiff-agent's pause program is linked with
#   busybox-static  /bin/busybox, from which the agent tests build their
#                 workload image (FROM scratch, no registry)
#   docker        the agent tests run pods on the machine's Docker daemon:
#                 checked only, as kubectl is
#   etcd-client   Debian's etcdctl 3.4, which the compatibility tests drive
#   iproute2, nftables  network namespaces and the partitions of the fault runs
#   cargo-nextest the test runner
#   kubectl       checked only: the machines' image has kubectl 1.32
#   librocksdb.a  RocksDB's C++ library, compiled once per machine (below)
# apt-get update runs once, only when something is to be installed; sudo is
# used only when not root.

skiff_prereqs() {
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        sudo=(sudo)
    fi
    local missing=()
    if ! dpkg-query -W -f='${Status}' libclang-dev 2>/dev/null | grep -q 'install ok installed'; then
        missing+=(libclang-dev)
    fi
    if ! command -v c++ >/dev/null 2>&1; then
        missing+=(g++)
    fi
    if [ ! -f /usr/lib/x86_64-linux-gnu/libc.a ] && [ ! -f /usr/lib/aarch64-linux-gnu/libc.a ] \
        && ! dpkg-query -W -f='${Status}' libc6-dev 2>/dev/null | grep -q 'install ok installed'; then
        missing+=(libc6-dev)
    fi
    if [ ! -x /bin/busybox ]; then
        missing+=(busybox-static)
    fi
    if ! command -v etcdctl >/dev/null 2>&1; then
        missing+=(etcd-client)
    fi
    if ! command -v ip >/dev/null 2>&1; then
        missing+=(iproute2)
    fi
    if ! command -v nft >/dev/null 2>&1; then
        missing+=(nftables)
    fi
    if [ "${#missing[@]}" -gt 0 ]; then
        echo "==> installing ${missing[*]} (apt-get)"
        "${sudo[@]}" apt-get update -q
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -q --no-install-recommends "${missing[@]}"
    else
        echo "==> prerequisites present: libclang-dev, c++, libc6-dev, busybox, etcdctl ($(command -v etcdctl)), ip, nft"
    fi
    # The agent tests need a Docker daemon (the machines' image runs one).
    if ! docker info >/dev/null 2>&1; then
        echo "warning: no Docker daemon answers: the agent:: tests will fail" >&2
    fi
    # kubectl 1.32 is part of these machines' image (it is not a Debian
    # package); the API server's tests run it.
    if ! command -v kubectl >/dev/null 2>&1 && [ -z "${KUBECTL_BIN:-}" ]; then
        echo "warning: kubectl not found (set KUBECTL_BIN): the api::kubectl tests will fail" >&2
    fi
    if ! cargo nextest --version >/dev/null 2>&1; then
        echo "==> installing cargo-nextest (cargo install --locked)"
        cargo install cargo-nextest --locked
    fi
    skiff_rocksdb_lib
}

# RocksDB's C++ library, compiled once per machine outside any target
# directory: .cargo/config.toml links it from ROCKSDB_LIB_DIR, so no cargo
# build in the workspace compiles RocksDB. When the library is missing,
# tests/rocksdb-lib (a package that only depends on librocksdb-sys) is built
# in release mode, with ROCKSDB_COMPILE=1 and away from the checkout's cargo
# config, and the librocksdb.a it compiled is copied there. Run from the
# repository root.
skiff_rocksdb_lib() {
    local lib_dir
    lib_dir="$(sed -n 's/^ROCKSDB_LIB_DIR *= *"\(.*\)".*/\1/p' .cargo/config.toml)"
    if [ -z "$lib_dir" ]; then
        echo "error: no ROCKSDB_LIB_DIR in .cargo/config.toml" >&2
        return 1
    fi
    if [ -f "$lib_dir/librocksdb.a" ]; then
        echo "==> RocksDB library present: $lib_dir/librocksdb.a"
        return 0
    fi
    local work="${lib_dir%/lib}/build"
    echo "==> compiling RocksDB's C++ library once for this machine (about 20 minutes on two cores)"
    echo "    in $work, for $lib_dir"
    rm -rf "$work/package"
    mkdir -p "$work/package" "$lib_dir"
    cp -R tests/rocksdb-lib/. "$work/package/"
    (
        cd "$work/package"
        env -u ROCKSDB_LIB_DIR -u ROCKSDB_STATIC -u CARGO_TARGET_DIR ROCKSDB_COMPILE=1 \
            cargo build --release --target-dir "$work/target"
    )
    local built
    built="$(ls -t "$work"/target/release/build/librocksdb-sys-*/out/librocksdb.a 2>/dev/null | head -n 1)"
    if [ -z "$built" ]; then
        echo "error: the RocksDB build in $work produced no librocksdb.a" >&2
        return 1
    fi
    cp "$built" "$lib_dir/.librocksdb.a.partial"
    mv "$lib_dir/.librocksdb.a.partial" "$lib_dir/librocksdb.a"
    echo "==> RocksDB library installed: $lib_dir/librocksdb.a"
}

# The target directory cargo uses here (.cargo/config.toml puts it outside the
# checkout, so RocksDB is compiled once per machine; CARGO_TARGET_DIR wins).
skiff_target_dir() {
    cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p'
}
