# shellcheck shell=bash
# Sourced by tests/run, tests/up and .ci/run: installs what a fresh Debian
# machine lacks to build and test skiff, and only that.
#   libclang-dev  RocksDB's Rust bindings are generated with libclang
#   g++           RocksDB itself is C++ (normally there already)
#   etcd-client   Debian's etcdctl 3.4, which the compatibility tests drive
#   cargo-nextest the test runner
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
    if ! command -v etcdctl >/dev/null 2>&1; then
        missing+=(etcd-client)
    fi
    if [ "${#missing[@]}" -gt 0 ]; then
        echo "==> installing ${missing[*]} (apt-get)"
        "${sudo[@]}" apt-get update -q
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -q --no-install-recommends "${missing[@]}"
    else
        echo "==> prerequisites present: libclang-dev, c++, etcdctl ($(command -v etcdctl))"
    fi
    if ! cargo nextest --version >/dev/null 2>&1; then
        echo "==> installing cargo-nextest (cargo install --locked)"
        cargo install cargo-nextest --locked
    fi
}

# The target directory cargo uses here (.cargo/config.toml puts it outside the
# checkout, so RocksDB is compiled once per machine; CARGO_TARGET_DIR wins).
skiff_target_dir() {
    cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p'
}
