//! Measurements of the node itself: memory from `/proc/meminfo`, disk
//! space of the data dir, the OS image and the kernel. Parsing is pure and
//! tested; the reads are thin.

use std::path::Path;

/// Memory as `/proc/meminfo` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Memory {
    pub total_bytes: u64,
    pub available_bytes: u64,
}

/// Disk space of one file system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Disk {
    pub total_bytes: u64,
    pub available_bytes: u64,
}

/// Parses `/proc/meminfo` (`MemTotal:  24684084 kB`).
pub fn parse_meminfo(text: &str) -> Memory {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024)
    };
    Memory {
        total_bytes: field("MemTotal"),
        available_bytes: field("MemAvailable"),
    }
}

/// `PRETTY_NAME` of an os-release file.
pub fn parse_os_release(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim().trim_matches('"').to_string())
}

/// Kubernetes' name of the architecture the agent runs on.
pub fn architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        other => other,
    }
}

pub fn memory() -> std::io::Result<Memory> {
    Ok(parse_meminfo(&std::fs::read_to_string("/proc/meminfo")?))
}

pub fn disk(path: &Path) -> std::io::Result<Disk> {
    let st = rustix::fs::statvfs(path)?;
    Ok(Disk {
        total_bytes: st.f_blocks * st.f_frsize,
        available_bytes: st.f_bavail * st.f_frsize,
    })
}

/// The OS image (`Debian GNU/Linux 12 (bookworm)`).
pub fn os_image() -> String {
    ["/etc/os-release", "/usr/lib/os-release"]
        .iter()
        .find_map(|p| parse_os_release(&std::fs::read_to_string(p).ok()?))
        .unwrap_or_else(|| "Linux".to_string())
}

/// The running kernel's release (`6.1.0-28-amd64`).
pub fn kernel_version() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The machine id (`/etc/machine-id`), empty when unknown.
pub fn machine_id() -> String {
    ["/etc/machine-id", "/var/lib/dbus/machine-id"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The id of this boot of the kernel.
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// CPUs the agent can use.
pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_fields_in_bytes() {
        let m = parse_meminfo(
            "MemTotal:       24684084 kB\nMemFree:         1000 kB\nMemAvailable:   12000000 kB\n",
        );
        assert_eq!(m.total_bytes, 24684084 * 1024);
        assert_eq!(m.available_bytes, 12000000 * 1024);
        assert_eq!(parse_meminfo("").total_bytes, 0);
    }

    #[test]
    fn os_release_pretty_name() {
        let text = "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n";
        assert_eq!(
            parse_os_release(text).as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
    }
}
