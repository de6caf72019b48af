//! `skiff endpoint hashkv`, `skiff defrag`, `skiff alarm list|disarm` and
//! `skiff move-leader`: etcdctl's maintenance commands, with its output.
//!
//! HashKV and Defragment are per member: they go to each endpoint (or, with
//! `--cluster`, each member's client URL) in turn, and a failed endpoint gets
//! its own line on stderr. Alarms are cluster state: any endpoint answers.
//! MoveLeader must reach the leader, which is found among the endpoints by
//! their Status, as etcdctl finds it.

use std::io::Write;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use futures_util::future::join_all;
use skiff_client::{Client, ClientError};
use skiff_proto::etcdserverpb::{
    AlarmMember, AlarmRequest, AlarmResponse, MemberListResponse, StatusResponse,
    alarm_request::AlarmAction,
};

use crate::cluster::{ask_each, endpoint_error};
use crate::output::{self, EndpointHashKv, OutputFormat};

#[derive(Debug, Args)]
pub struct HashKvArgs {
    /// Hash the keyspace as of this revision (0: each member's latest).
    #[arg(long, default_value_t = 0, value_name = "REVISION")]
    pub rev: i64,
}

#[derive(Debug, Args)]
pub struct DefragArgs {
    /// Defragment every member, by the client URLs of the member list.
    #[arg(long)]
    pub cluster: bool,
}

#[derive(Debug, Subcommand)]
pub enum AlarmCommand {
    /// List every raised alarm.
    List,
    /// Clear every raised alarm.
    Disarm,
}

#[derive(Debug, Args)]
pub struct MoveLeaderArgs {
    /// The member to hand leadership to: its ID in hex, as `member list`
    /// prints it.
    #[arg(value_name = "TARGET_ID", value_parser = parse_member_id)]
    pub target: u64,
}

/// Parses a member ID in hexadecimal, as etcdctl prints and reads them
/// (`8e9e05c52164694d`).
pub fn parse_member_id(s: &str) -> anyhow::Result<u64> {
    crate::kv::parse_hex_id(s, "member")
}

/// `endpoint hashkv`: HashKV of every endpoint; `Ok(false)` when some
/// endpoint failed (its error is already on stderr).
pub async fn hash_kv(
    client: &Client,
    format: OutputFormat,
    endpoints: &[String],
    args: &HashKvArgs,
    out: &mut dyn Write,
) -> anyhow::Result<bool> {
    if args.rev < 0 {
        bail!("invalid revision {}: must not be negative", args.rev);
    }
    let (answers, all_ok) = ask_each(endpoints, "hash", |ep| client.hash_kv(ep, args.rev)).await;
    let list: Vec<EndpointHashKv> = answers
        .into_iter()
        .map(|(endpoint, resp)| EndpointHashKv { endpoint, resp })
        .collect();
    output::write_endpoint_hash_kv(out, format, &list)?;
    Ok(all_ok)
}

/// `defrag`: one endpoint after the other, since a member being defragmented
/// answers nothing else meanwhile; `Ok(false)` when some endpoint failed.
/// etcdctl prints the same lines whatever the output format.
pub async fn defrag(
    client: &Client,
    endpoints: &[String],
    out: &mut dyn Write,
) -> anyhow::Result<bool> {
    let mut all_ok = true;
    for endpoint in endpoints {
        match client.defragment(endpoint).await {
            Ok(_) => {
                writeln!(out, "Finished defragmenting etcd member[{endpoint}]")?;
                out.flush()?;
            }
            Err(e) => {
                all_ok = false;
                eprintln!(
                    "Failed to defragment etcd member[{endpoint}] ({})",
                    endpoint_error(endpoint, &e)
                );
            }
        }
    }
    Ok(all_ok)
}

/// `alarm list` and `alarm disarm`. Disarm clears each raised alarm in
/// turn and prints the ones it cleared, as etcd's client does.
pub async fn alarm(
    client: &Client,
    format: OutputFormat,
    command: AlarmCommand,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let raised = client
        .alarm(AlarmRequest {
            action: AlarmAction::Get as i32,
            ..Default::default()
        })
        .await?;
    let resp = match command {
        AlarmCommand::List => raised,
        AlarmCommand::Disarm => {
            let mut cleared = Vec::new();
            for alarm in raised.alarms {
                let resp = client.alarm(disarm_request(&alarm)).await?;
                cleared.extend(resp.alarms);
            }
            AlarmResponse {
                header: None,
                alarms: cleared,
            }
        }
    };
    output::write_alarms(out, format, &resp)?;
    Ok(())
}

fn disarm_request(alarm: &AlarmMember) -> AlarmRequest {
    AlarmRequest {
        action: AlarmAction::Deactivate as i32,
        member_id: alarm.member_id,
        alarm: alarm.alarm,
    }
}

/// `move-leader TARGET_ID`: checks that the target is a voting member,
/// finds the leader among the endpoints and asks it to step aside.
pub async fn move_leader(
    client: &Client,
    format: OutputFormat,
    args: &MoveLeaderArgs,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let target = args.target;
    let members = client
        .member_list()
        .await
        .context("failed to fetch the cluster member list")?;
    check_transferee(&members, target)?;

    let endpoints: Vec<String> = client.endpoints().iter().map(|e| e.to_string()).collect();
    let statuses = join_all(endpoints.iter().map(|ep| client.status(ep))).await;
    let answers: Vec<(String, Result<StatusResponse, ClientError>)> =
        endpoints.into_iter().zip(statuses).collect();
    let (leader_endpoint, leader) = find_leader(&answers)?;

    let resp = client
        .move_leader(&leader_endpoint, target)
        .await
        .with_context(|| format!("failed to move the leadership to {target:x}"))?;
    match format {
        OutputFormat::Json => output::write_move_leader_json(out, &resp)?,
        OutputFormat::Simple | OutputFormat::Table => {
            writeln!(out, "Leadership transferred from {leader:x} to {target:x}")?;
        }
    }
    Ok(())
}

/// Whether `target` may lead: a member of the cluster, not a learner.
fn check_transferee(members: &MemberListResponse, target: u64) -> anyhow::Result<()> {
    match members.members.iter().find(|m| m.id == target) {
        None => {
            let known: Vec<String> = members
                .members
                .iter()
                .map(|m| format!("{:x}", m.id))
                .collect();
            bail!(
                "no member has the ID {target:x} given as TARGET_ID (the members are {})",
                known.join(", ")
            )
        }
        Some(m) if m.is_learner => {
            bail!("member {target:x} (TARGET_ID) is a learner, which cannot lead")
        }
        Some(_) => Ok(()),
    }
}

/// The endpoint whose member says it leads, and the leader's ID, as
/// etcdctl picks it: the first whose Status names itself the leader.
fn find_leader(
    answers: &[(String, Result<StatusResponse, ClientError>)],
) -> anyhow::Result<(String, u64)> {
    let leader = answers.iter().find_map(|(endpoint, answer)| {
        let status = answer.as_ref().ok()?;
        let member_id = status.header.as_ref()?.member_id;
        (status.leader != 0 && status.leader == member_id)
            .then(|| (endpoint.clone(), status.leader))
    });
    if let Some(found) = leader {
        return Ok(found);
    }
    let endpoints: Vec<&str> = answers.iter().map(|(ep, _)| ep.as_str()).collect();
    let failures: Vec<String> = answers
        .iter()
        .filter_map(|(ep, answer)| {
            answer
                .as_ref()
                .err()
                .map(|e| format!("{ep}: {}", endpoint_error(ep, e)))
        })
        .collect();
    if failures.is_empty() {
        bail!("no leader endpoint given at [{}]", endpoints.join(" "))
    }
    bail!(
        "no leader endpoint given at [{}] ({})",
        endpoints.join(" "),
        failures.join("; ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use skiff_proto::etcdserverpb::{Member, ResponseHeader};

    #[test]
    fn member_ids_are_hex() {
        assert_eq!(
            parse_member_id("8e9e05c52164694d").unwrap(),
            0x8e9e05c52164694d
        );
        assert_eq!(parse_member_id("0x10").unwrap(), 16);
        let err = parse_member_id("xyz").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid member ID \"xyz\": expecting an ID in hex"),
            "{err}"
        );
    }

    #[test]
    fn a_bad_target_id_is_a_usage_error_naming_the_argument() {
        #[derive(Debug, Parser)]
        struct Cmd {
            #[command(flatten)]
            args: MoveLeaderArgs,
        }
        let err = Cmd::try_parse_from(["move-leader", "nothex"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let text = err.to_string();
        assert!(text.contains("TARGET_ID"), "{text}");
        assert!(text.contains("invalid member ID \"nothex\""), "{text}");
        let ok = Cmd::try_parse_from(["move-leader", "ab"]).unwrap();
        assert_eq!(ok.args.target, 0xab);
    }

    fn members() -> MemberListResponse {
        MemberListResponse {
            members: vec![
                Member {
                    id: 0xa,
                    name: "s1".into(),
                    ..Default::default()
                },
                Member {
                    id: 0xb,
                    is_learner: true,
                    ..Default::default()
                },
            ],
            ..Default::default()
        }
    }

    #[test]
    fn transferee_must_be_a_voting_member() {
        check_transferee(&members(), 0xa).unwrap();
        let err = check_transferee(&members(), 0xc).unwrap_err().to_string();
        assert_eq!(
            err,
            "no member has the ID c given as TARGET_ID (the members are a, b)"
        );
        let err = check_transferee(&members(), 0xb).unwrap_err().to_string();
        assert_eq!(err, "member b (TARGET_ID) is a learner, which cannot lead");
    }

    fn status(member_id: u64, leader: u64) -> Result<StatusResponse, ClientError> {
        Ok(StatusResponse {
            header: Some(ResponseHeader {
                member_id,
                ..Default::default()
            }),
            leader,
            ..Default::default()
        })
    }

    #[test]
    fn the_leader_is_the_member_that_names_itself() {
        let answers = vec![
            (
                "a:1".to_string(),
                Err(ClientError::Unavailable {
                    endpoint: "a:1".into(),
                    message: "a:1: connection refused".into(),
                }),
            ),
            ("b:2".to_string(), status(0xb, 0xc)),
            ("c:3".to_string(), status(0xc, 0xc)),
        ];
        assert_eq!(find_leader(&answers).unwrap(), ("c:3".to_string(), 0xc));

        let err = find_leader(&answers[..2]).unwrap_err().to_string();
        assert_eq!(
            err,
            "no leader endpoint given at [a:1 b:2] (a:1: connection refused)"
        );
        let err = find_leader(&[("b:2".to_string(), status(0xb, 0))])
            .unwrap_err()
            .to_string();
        assert_eq!(err, "no leader endpoint given at [b:2]");
    }

    #[test]
    fn disarm_names_the_alarm_it_clears() {
        let req = disarm_request(&AlarmMember {
            member_id: 7,
            alarm: 1,
        });
        assert_eq!(
            (req.action, req.member_id, req.alarm),
            (AlarmAction::Deactivate as i32, 7, 1)
        );
    }
}
