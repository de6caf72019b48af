//! skiff-agent, the node agent: registers its node, heartbeats through a store
//! lease, runs the pods bound to its node as Docker containers and proxies
//! Services. Only this crate talks to Docker.
//!
//! The agent arrives with the orchestrator; the store comes first.
