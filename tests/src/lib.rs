//! Fixtures for skiff's cross-process tests: real binaries on loopback ports.
//!
//! - [`Cluster`] starts `skiff-store` members on free `127.0.0.1` ports, each
//!   with its own data dir and log file, and kills, stops, restarts, pauses and
//!   resumes them. When a test panics, the tails of the member logs are printed
//!   and the directory holding logs and data is kept.
//! - [`wait_for`] polls a condition until it holds or a deadline passes: tests
//!   never sleep for a fixed time.
//! - [`history`] records client operations with invoke and return times and
//!   checks them for linearizability.
//! - [`netns`] gives each member a network namespace of its own, so that a
//!   test can cut one off from its peers ([`Cluster::start_in_network`]).
//! - [`watch_check`] checks recorded watch streams against a reference watch:
//!   order, no gap or duplicate, resumes right after the last event seen.
//! - [`faults`] runs a workload and watchers under a nemesis (kill, pause,
//!   partition) and checks what they saw.
//! - [`cmd`] runs Debian's `etcdctl` and the `skiff` CLI against a cluster and
//!   parses their tables.
//! - [`ops`] builds the Txn operations and reads the events tests share.
//! - [`assert_status`] checks a gRPC error's code and exact message.
//! - [`Control`] starts a real `skiff-control` API server against a cluster;
//!   [`Api`] talks to it and reads its watch streams.
//! - [`Agent`] starts a real `skiff-agent` against a cluster and the
//!   machine's Docker daemon; [`agent::busybox_image`] builds the test
//!   workload image from Debian's busybox-static.
//! - [`bins`] finds the binaries under test in the cargo target directory.
//!
//! Member indexes are 0-based: member `i` is named `s{i+1}`.

pub mod agent;
pub mod bins;
pub mod cluster;
pub mod cmd;
pub mod control;
pub mod faults;
pub mod history;
pub mod netns;
pub mod ops;
pub mod status;
pub mod wait;
pub mod watch_check;

pub use agent::Agent;
pub use cluster::{Cluster, prefix_end, strip_scheme};
pub use cmd::{CmdOutput, Table};
pub use control::{Api, Control};
pub use status::assert_status;
pub use wait::{Check, pace, try_wait_for, wait_for};

use std::time::Duration;

/// How long members of a new cluster may take to listen on their ports.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a cluster may take to elect a leader that every live member knows.
pub const LEADER_TIMEOUT: Duration = Duration::from_secs(20);
/// Client-side bound on one gRPC call. Longer than the server's own request
/// timeout (5 s) so that what a test sees is the server's answer, not ours.
pub const RPC_TIMEOUT: Duration = Duration::from_secs(15);
/// Bound on one run of `etcdctl` or `skiff`.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a member may take to exit after SIGTERM, SIGINT or SIGKILL.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(10);
/// Lines of each member's log shown when a test fails.
pub const LOG_TAIL_LINES: usize = 40;
