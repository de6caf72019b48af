//! A private network of network namespaces, one per store member, so that a
//! member can be cut off from its peers while clients still reach it.
//!
//! Layout of network `N` (0..=250, the first one free on this machine):
//!
//! ```text
//!   test process (root namespace)            skiff{N}-sw: the switch
//!   skfh{N} 10.231.N.1/24  ----- veth ------ host --+
//!                                                  br0 --- m1 ---- eth0 10.231.N.11  skiff{N}-s1
//!                                                   +----- m2 ---- eth0 10.231.N.12  skiff{N}-s2
//!                                                   +----- m3 ---- eth0 10.231.N.13  skiff{N}-s3
//! ```
//!
//! The bridge lives in a namespace of its own rather than in the root one:
//! there, the host's firewall (Docker sets the root FORWARD policy to DROP,
//! and bridged frames pass through it) would drop member-to-member traffic.
//! No namespace has a default route, so nothing leaves the machine; the root
//! namespace reaches members through `skfh{N}` without forwarding anything.
//!
//! [`Network::isolate`] loads an nftables table into a member's namespace
//! that drops every packet to or from the other members; the test process,
//! at 10.231.N.1, still reaches it. [`Network::heal`] removes the table.
//!
//! Ownership: `/run/skiff-netns/N` holds the owner's pid and is created
//! first (exclusively), so concurrent tests never share a network. Dropping
//! the [`Network`] removes everything it created; a network whose owner died
//! without cleaning up is removed by the next [`Network::create`].

use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where ownership files live (a tmpfs, cleared on reboot like the namespaces).
const OWNERS_DIR: &str = "/run/skiff-netns";
/// Network numbers tried, the third byte of 10.231.N.0/24.
const NETWORKS: u8 = 250;
/// First host byte of member addresses: member `i` is 10.231.N.(11 + i).
const FIRST_MEMBER_HOST: usize = 11;
/// Name of the nftables table that isolates a member.
const PARTITION_TABLE: &str = "skiff_partition";

/// A switch namespace and one namespace per member; see the module docs.
#[derive(Debug)]
pub struct Network {
    number: u8,
    members: usize,
    owner_file: PathBuf,
}

impl Network {
    /// Creates a network for `members` members (at most 200). Needs root,
    /// iproute2 and nftables.
    pub fn create(members: usize) -> Network {
        assert!(
            (1..=200).contains(&members),
            "a network holds 1 to 200 members"
        );
        std::fs::create_dir_all(OWNERS_DIR).unwrap_or_else(|e| panic!("create {OWNERS_DIR}: {e}"));
        sweep_abandoned();
        for number in 0..=NETWORKS {
            let owner_file = Path::new(OWNERS_DIR).join(number.to_string());
            let claimed = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&owner_file);
            let Ok(mut file) = claimed else {
                continue;
            };
            writeln!(file, "{}", std::process::id())
                .unwrap_or_else(|e| panic!("write {}: {e}", owner_file.display()));
            let network = Network {
                number,
                members,
                owner_file,
            };
            // Leftovers with this number (from an owner that died between
            // creating them and its ownership file being swept) go first.
            network.remove_links();
            network.build();
            return network;
        }
        panic!("no free network number under {OWNERS_DIR}: all {NETWORKS} are taken");
    }

    /// The address of member `i`.
    pub fn member_ip(&self, i: usize) -> String {
        assert!(i < self.members, "member {i} is not in this network");
        format!("10.231.{}.{}", self.number, FIRST_MEMBER_HOST + i)
    }

    /// The namespace member `i` runs in.
    pub fn namespace(&self, i: usize) -> String {
        format!("skiff{}-s{}", self.number, i + 1)
    }

    /// Cuts member `i` off from every other member, both ways; clients in
    /// the root namespace still reach it. Isolating twice is the same as once.
    pub fn isolate(&self, i: usize) {
        let peers = (0..self.members)
            .filter(|&j| j != i)
            .map(|j| self.member_ip(j))
            .collect::<Vec<_>>()
            .join(", ");
        if peers.is_empty() {
            return;
        }
        self.heal(i);
        let rules = format!(
            "table inet {PARTITION_TABLE} {{\n\
             \x20 chain input {{ type filter hook input priority 0; policy accept; ip saddr {{ {peers} }} drop; }}\n\
             \x20 chain output {{ type filter hook output priority 0; policy accept; ip daddr {{ {peers} }} drop; }}\n\
             }}\n"
        );
        let rules_file = self.owner_file.with_extension(format!("nft-{i}"));
        std::fs::write(&rules_file, rules)
            .unwrap_or_else(|e| panic!("write {}: {e}", rules_file.display()));
        let file = rules_file.display().to_string();
        run(&[
            "ip",
            "netns",
            "exec",
            &self.namespace(i),
            "nft",
            "-f",
            &file,
        ]);
        let _ = std::fs::remove_file(&rules_file);
    }

    /// Undoes [`Network::isolate`] for member `i` (nothing if not isolated).
    pub fn heal(&self, i: usize) {
        let ns = self.namespace(i);
        let _ = try_run(&[
            "ip",
            "netns",
            "exec",
            &ns,
            "nft",
            "delete",
            "table",
            "inet",
            PARTITION_TABLE,
        ]);
    }

    /// Whether member `i` is isolated now.
    pub fn is_isolated(&self, i: usize) -> bool {
        let ns = self.namespace(i);
        try_run(&["ip", "netns", "exec", &ns, "nft", "list", "tables"])
            .is_ok_and(|tables| tables.contains(PARTITION_TABLE))
    }

    fn switch(&self) -> String {
        format!("skiff{}-sw", self.number)
    }

    fn host_link(&self) -> String {
        format!("skfh{}", self.number)
    }

    fn build(&self) {
        let switch = self.switch();
        let host = self.host_link();
        run(&["ip", "netns", "add", &switch]);
        run(&[
            "ip", "netns", "exec", &switch, "ip", "link", "add", "br0", "type", "bridge",
        ]);
        run(&[
            "ip", "netns", "exec", &switch, "ip", "link", "set", "br0", "up",
        ]);
        run(&[
            "ip", "link", "add", &host, "type", "veth", "peer", "name", "host", "netns", &switch,
        ]);
        run(&[
            "ip", "netns", "exec", &switch, "ip", "link", "set", "host", "master", "br0", "up",
        ]);
        let host_ip = format!("10.231.{}.1/24", self.number);
        run(&["ip", "addr", "add", &host_ip, "dev", &host]);
        run(&["ip", "link", "set", &host, "up"]);
        for i in 0..self.members {
            let ns = self.namespace(i);
            let port = format!("m{}", i + 1);
            let ip = format!("{}/24", self.member_ip(i));
            run(&["ip", "netns", "add", &ns]);
            run(&["ip", "netns", "exec", &ns, "ip", "link", "set", "lo", "up"]);
            run(&[
                "ip", "netns", "exec", &switch, "ip", "link", "add", &port, "type", "veth", "peer",
                "name", "eth0", "netns", &ns,
            ]);
            run(&[
                "ip", "netns", "exec", &switch, "ip", "link", "set", &port, "master", "br0", "up",
            ]);
            run(&[
                "ip", "netns", "exec", &ns, "ip", "addr", "add", &ip, "dev", "eth0",
            ]);
            run(&[
                "ip", "netns", "exec", &ns, "ip", "link", "set", "eth0", "up",
            ]);
        }
    }

    /// Removes the namespaces and the root-side link of this network number.
    fn remove_links(&self) {
        remove_network(self.number);
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        self.remove_links();
        let _ = std::fs::remove_file(&self.owner_file);
    }
}

/// Removes network `number`'s namespaces (whatever members it had) and its
/// root-side link. Deleting the switch namespace removes the bridge and the
/// veth pairs with it; the root-side link is deleted explicitly so that its
/// name and address are free at once.
fn remove_network(number: u8) {
    let prefix = format!("skiff{number}-");
    for ns in namespaces() {
        if ns.starts_with(&prefix) {
            let _ = try_run(&["ip", "netns", "del", &ns]);
        }
    }
    let host = format!("skfh{number}");
    let _ = try_run(&["ip", "link", "del", &host]);
}

/// Every named network namespace.
fn namespaces() -> Vec<String> {
    try_run(&["ip", "netns", "list"])
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// Removes networks whose owner process is gone.
fn sweep_abandoned() {
    let Ok(entries) = std::fs::read_dir(OWNERS_DIR) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Ok(number) = name.parse::<u8>() else {
            continue;
        };
        let owner = std::fs::read_to_string(entry.path()).unwrap_or_default();
        let alive = owner
            .trim()
            .parse::<u32>()
            .is_ok_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
        // An empty file is an owner that is still writing its pid.
        if !alive && !owner.trim().is_empty() {
            remove_network(number);
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Runs a command, returning its stdout, or its stderr as the error.
fn try_run(argv: &[&str]) -> Result<String, String> {
    let output = Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .map_err(|e| format!("{}: {e}", argv[0]))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_string())
    }
}

/// Runs a command that must succeed.
fn run(argv: &[&str]) -> String {
    try_run(argv).unwrap_or_else(|e| panic!("`{}` failed: {e}", argv.join(" ")))
}
