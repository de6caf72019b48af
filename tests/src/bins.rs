//! Where the binaries under test are.
//!
//! skiff's own binaries live in the directory of the cargo target profile:
//! `SKIFF_BIN_DIR` if set, else the directory two levels above the running
//! test executable (`…/target/debug/deps/cluster-HASH` → `…/target/debug`).
//! `SKIFF_STORE_BIN` replaces `skiff-store` by another program taking etcd's
//! flags: `SKIFF_STORE_BIN=/usr/bin/etcd` runs the suite against etcd itself,
//! which checks the tests' expectations against the reference.

use std::env;
use std::path::{Path, PathBuf};

/// The directory holding skiff's built binaries.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = env::var_os("SKIFF_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = env::current_exe().expect("locate the running test executable");
    let dir = exe
        .parent()
        .expect("the test executable has a parent directory");
    if dir.file_name().is_some_and(|name| name == "deps") {
        dir.parent().unwrap_or(dir).to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

/// A binary of the workspace; panics with how to build it when it is missing.
pub fn bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    if !path.is_file() {
        panic!(
            "{name} not found at {}: build it with `cargo build --workspace --bins` \
             (tests/run does), or set SKIFF_BIN_DIR to the directory that holds it",
            path.display()
        );
    }
    path
}

/// The store server: `SKIFF_STORE_BIN`, else the built `skiff-store`.
pub fn store_bin() -> PathBuf {
    match env::var_os("SKIFF_STORE_BIN") {
        Some(path) => {
            let path = PathBuf::from(path);
            assert!(
                path.is_file(),
                "SKIFF_STORE_BIN={} is not a file",
                path.display()
            );
            path
        }
        None => bin("skiff-store"),
    }
}

/// The `skiff` CLI.
pub fn skiff_bin() -> PathBuf {
    bin("skiff")
}

/// Debian's `etcdctl` (package etcd-client, 3.4): `ETCDCTL_BIN`, else the
/// first `etcdctl` on `PATH`. Missing is a failure, never a skip.
pub fn etcdctl_bin() -> PathBuf {
    if let Some(path) = env::var_os("ETCDCTL_BIN") {
        return PathBuf::from(path);
    }
    let found = env::var_os("PATH")
        .map(|paths| {
            env::split_paths(&paths)
                .map(|dir| dir.join("etcdctl"))
                .find(|p| p.is_file())
        })
        .unwrap_or(None);
    match found {
        Some(path) => path,
        None if Path::new("/usr/bin/etcdctl").is_file() => PathBuf::from("/usr/bin/etcdctl"),
        None => panic!(
            "etcdctl not found on PATH: run the tests with tests/run, which installs \
             Debian's etcd-client (etcdctl 3.4), or `apt-get install etcd-client`"
        ),
    }
}
