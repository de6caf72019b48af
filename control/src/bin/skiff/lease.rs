//! `skiff lease grant|revoke|keep-alive|timetolive|list`: etcdctl's lease
//! commands. Lease IDs are hexadecimal on the command line and in output,
//! as etcdctl prints them (`%016x`).

use std::io::Write;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use skiff_client::Client;
use skiff_proto::etcdserverpb::{LeaseLeasesResponse, LeaseTimeToLiveResponse};
use tokio::time::Instant;

use crate::kv::parse_lease;
use crate::watch::shutdown_signal;

#[derive(Debug, Subcommand)]
pub enum LeaseCommand {
    /// Create a lease with a TTL in seconds.
    Grant(GrantArgs),
    /// Revoke a lease (its keys are deleted).
    Revoke(IdArgs),
    /// Renew a lease every TTL/3 until Ctrl-C or it expires.
    #[command(name = "keep-alive")]
    KeepAlive(KeepAliveArgs),
    /// Show a lease's TTL and remaining time.
    #[command(name = "timetolive")]
    TimeToLive(TimeToLiveArgs),
    /// List every live lease.
    List,
}

#[derive(Clone, Debug, Args)]
pub struct GrantArgs {
    /// Time to live, in seconds.
    pub ttl: String,
}

#[derive(Clone, Debug, Args)]
pub struct IdArgs {
    /// Lease ID (hexadecimal).
    pub id: String,
}

#[derive(Clone, Debug, Args)]
pub struct KeepAliveArgs {
    /// Lease ID (hexadecimal).
    pub id: String,
    /// Renew once and exit.
    #[arg(long)]
    pub once: bool,
}

#[derive(Clone, Debug, Args)]
pub struct TimeToLiveArgs {
    /// Lease ID (hexadecimal).
    pub id: String,
    /// Also list the keys attached to the lease.
    #[arg(long)]
    pub keys: bool,
}

/// Parses a TTL in seconds, as etcdctl's `strconv.ParseInt`.
pub fn parse_ttl(s: &str) -> anyhow::Result<i64> {
    s.trim()
        .parse::<i64>()
        .with_context(|| format!("bad TTL ({s:?})"))
}

fn hex(id: i64) -> String {
    format!("{:016x}", id as u64)
}

pub fn granted_line(id: i64, ttl: i64) -> String {
    format!("lease {} granted with TTL({ttl}s)", hex(id))
}

pub fn revoked_line(id: i64) -> String {
    format!("lease {} revoked", hex(id))
}

pub fn keepalived_line(id: i64, ttl: i64) -> String {
    format!("lease {} keepalived with TTL({ttl})", hex(id))
}

pub fn expired_line(id: i64) -> String {
    format!("lease {} expired or revoked.", hex(id))
}

/// etcdctl's `TimeToLive` line; keys print like Go's `%v` of a `[]string`.
pub fn time_to_live_line(resp: &LeaseTimeToLiveResponse, keys: bool) -> String {
    if resp.granted_ttl == 0 && resp.ttl == -1 {
        return format!("lease {} already expired", hex(resp.id));
    }
    let mut text = format!(
        "lease {} granted with TTL({}s), remaining({}s)",
        hex(resp.id),
        resp.granted_ttl,
        resp.ttl
    );
    if keys {
        let names: Vec<String> = resp
            .keys
            .iter()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect();
        text.push_str(&format!(", attached keys([{}])", names.join(" ")));
    }
    text
}

pub fn write_leases(w: &mut dyn Write, resp: &LeaseLeasesResponse) -> std::io::Result<()> {
    writeln!(w, "found {} leases", resp.leases.len())?;
    for lease in &resp.leases {
        writeln!(w, "{}", hex(lease.id))?;
    }
    Ok(())
}

/// The pause between renewals: a third of the TTL, at least 500 ms.
pub fn renew_interval(ttl: i64) -> Duration {
    let ms = u64::try_from(ttl.max(0)).unwrap_or(0).saturating_mul(1000) / 3;
    Duration::from_millis(ms.max(500))
}

pub async fn run(
    client: &Client,
    command: LeaseCommand,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    match command {
        LeaseCommand::Grant(args) => {
            let ttl = parse_ttl(&args.ttl)?;
            let resp = client
                .lease_grant(ttl, 0)
                .await
                .map_err(|e| anyhow::anyhow!("failed to grant lease ({e})"))?;
            if !resp.error.is_empty() {
                bail!("{}", resp.error);
            }
            writeln!(out, "{}", granted_line(resp.id, resp.ttl))?;
        }
        LeaseCommand::Revoke(args) => {
            let id = parse_lease(&args.id)?;
            client
                .lease_revoke(id)
                .await
                .map_err(|e| anyhow::anyhow!("failed to revoke lease ({e})"))?;
            writeln!(out, "{}", revoked_line(id))?;
        }
        LeaseCommand::TimeToLive(args) => {
            let id = parse_lease(&args.id)?;
            let resp = client.lease_time_to_live(id, args.keys).await?;
            writeln!(out, "{}", time_to_live_line(&resp, args.keys))?;
        }
        LeaseCommand::List => {
            let resp = client.leases().await?;
            write_leases(out, &resp)?;
        }
        LeaseCommand::KeepAlive(args) => {
            let id = parse_lease(&args.id)?;
            if args.once {
                let resp = client.lease_keep_alive_once(id).await?;
                if resp.ttl <= 0 {
                    bail!("etcdserver: requested lease not found");
                }
                writeln!(out, "{}", keepalived_line(resp.id, resp.ttl))?;
                return Ok(());
            }
            keep_alive_loop(client, id, out).await?;
        }
    }
    Ok(())
}

/// Renews every TTL/3 until Ctrl-C/SIGTERM (exit 0 silently) or the lease
/// is gone: unknown, expired, or not renewed within its TTL because no
/// member answered. Then prints etcdctl's "expired or revoked." line.
async fn keep_alive_loop(client: &Client, id: i64, out: &mut dyn Write) -> anyhow::Result<()> {
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    // Until the first renewal, give the lease the default request budget.
    let mut expires_at: Option<Instant> = None;
    loop {
        let result = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            r = client.lease_keep_alive_once(id) => r,
        };
        let pause = match result {
            Ok(resp) if resp.ttl > 0 => {
                writeln!(out, "{}", keepalived_line(resp.id, resp.ttl))?;
                out.flush()?;
                expires_at = Some(Instant::now() + Duration::from_secs(resp.ttl as u64));
                renew_interval(resp.ttl)
            }
            Ok(_) => break,
            Err(e) => {
                tracing::debug!(error = %e, "keep-alive failed; retrying");
                match expires_at {
                    Some(at) if Instant::now() < at => Duration::from_millis(500),
                    Some(_) => break,
                    None => return Err(e.into()),
                }
            }
        };
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            _ = tokio::time::sleep(pause) => {}
        }
    }
    writeln!(out, "{}", expired_line(id))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_proto::etcdserverpb::LeaseStatus;

    const ID: i64 = 0x694d77aa9e38260f;

    #[test]
    fn lines_match_etcdctl() {
        assert_eq!(
            granted_line(ID, 60),
            "lease 694d77aa9e38260f granted with TTL(60s)"
        );
        assert_eq!(revoked_line(ID), "lease 694d77aa9e38260f revoked");
        assert_eq!(
            keepalived_line(ID, 60),
            "lease 694d77aa9e38260f keepalived with TTL(60)"
        );
        assert_eq!(
            expired_line(ID),
            "lease 694d77aa9e38260f expired or revoked."
        );
        assert_eq!(
            granted_line(0x1f, 5),
            "lease 000000000000001f granted with TTL(5s)"
        );
    }

    #[test]
    fn time_to_live_lines() {
        let mut resp = LeaseTimeToLiveResponse {
            id: ID,
            ttl: 58,
            granted_ttl: 60,
            keys: vec![b"a".to_vec(), b"b".to_vec()],
            ..Default::default()
        };
        assert_eq!(
            time_to_live_line(&resp, false),
            "lease 694d77aa9e38260f granted with TTL(60s), remaining(58s)"
        );
        assert_eq!(
            time_to_live_line(&resp, true),
            "lease 694d77aa9e38260f granted with TTL(60s), remaining(58s), attached keys([a b])"
        );
        resp.keys.clear();
        assert!(time_to_live_line(&resp, true).ends_with(", attached keys([])"));
        resp.ttl = -1;
        resp.granted_ttl = 0;
        assert_eq!(
            time_to_live_line(&resp, true),
            "lease 694d77aa9e38260f already expired"
        );
    }

    #[test]
    fn list_output() {
        let resp = LeaseLeasesResponse {
            header: None,
            leases: vec![LeaseStatus { id: ID }, LeaseStatus { id: 2 }],
        };
        let mut buf = Vec::new();
        write_leases(&mut buf, &resp).unwrap();
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            "found 2 leases\n694d77aa9e38260f\n0000000000000002\n"
        );
    }

    #[test]
    fn ttl_and_interval() {
        assert_eq!(parse_ttl("60").unwrap(), 60);
        assert!(parse_ttl("6x").is_err());
        assert_eq!(renew_interval(60), Duration::from_secs(20));
        assert_eq!(renew_interval(1), Duration::from_millis(500));
        assert_eq!(parse_lease("694d77aa9e38260f").unwrap(), ID);
    }
}
