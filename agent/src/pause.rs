//! The pause image: skiff's own tiny static program (pause/pause.c, built
//! by build.rs) alone in a `FROM scratch` image, which the agent imports
//! into Docker when it is missing. No registry is needed.

use crate::runtime::{ContainerRuntime, RuntimeError};

/// The pause program, statically linked.
pub const PAUSE_BINARY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/pause"));

/// The pause image of this agent version.
pub fn pause_image() -> String {
    format!("skiff/pause:{}", env!("CARGO_PKG_VERSION"))
}

/// A root file system tar holding only `/pause`.
pub fn rootfs_tar() -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(PAUSE_BINARY.len() as u64);
    header.set_mode(0o755);
    header.set_mtime(0);
    header.set_cksum();
    builder
        .append_data(&mut header, "pause", PAUSE_BINARY)
        .expect("writing to memory does not fail");
    builder
        .into_inner()
        .expect("writing to memory does not fail")
}

/// Imports the pause image unless Docker has it; returns its name.
pub async fn ensure_pause_image<R: ContainerRuntime>(runtime: &R) -> Result<String, RuntimeError> {
    let image = pause_image();
    if !runtime.image_present(&image).await? {
        tracing::info!(image = %image, "importing the pause image");
        runtime
            .import_image(&image, rootfs_tar(), &["/pause"])
            .await?;
    }
    Ok(image)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rootfs_holds_the_static_pause_binary() {
        let tar = rootfs_tar();
        let mut archive = tar::Archive::new(tar.as_slice());
        let entries: Vec<_> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path().unwrap().display().to_string(),
                    e.header().mode().unwrap(),
                )
            })
            .collect();
        assert_eq!(entries, vec![("pause".to_string(), 0o755)]);
        assert_eq!(&PAUSE_BINARY[..4], b"\x7fELF");
    }
}
