//! Compiles the pause program (pause/pause.c) into a static binary that
//! the agent embeds and puts into its pause image.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let source = "pause/pause.c";
    println!("cargo:rerun-if-changed={source}");
    println!("cargo:rerun-if-env-changed=CC");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("pause");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let status = Command::new(&cc)
        .args(["-static", "-Os", "-s", "-Wall", "-Werror", "-o"])
        .arg(&out)
        .arg(source)
        .status()
        .unwrap_or_else(|e| panic!("run {cc} to build the pause program: {e}"));
    assert!(
        status.success(),
        "{cc} failed to build the pause program ({status}); a C compiler and a static libc \
         (Debian: gcc, libc6-dev) are needed"
    );
}
