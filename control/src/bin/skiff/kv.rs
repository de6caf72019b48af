//! `skiff kv put|get|del|txn|compact|watch`: etcdctl's key-value commands.
//!
//! The argument structs double as the grammar of txn op lines (`put k v`,
//! `get k --prefix`, ...), as etcdctl reuses its commands there; turning
//! them into requests is pure ([`put_request`], [`range_request`],
//! [`delete_request`]).

use std::ffi::OsString;
use std::io::{self, IsTerminal, Write};
use std::os::unix::ffi::OsStringExt;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use skiff_client::Client;
use skiff_client::keys::{FROM_KEY_RANGE_END, prefix_range_end};
use skiff_proto::etcdserverpb::{
    CompactionRequest, DeleteRangeRequest, PutRequest, RangeRequest, range_request,
};

use crate::output::{self, OutputFormat};
use crate::txn;

#[derive(Debug, Subcommand)]
pub enum KvCommand {
    /// Put KEY to VALUE (prints OK).
    Put(PutArgs),
    /// Get a key or a range of keys.
    Get(GetArgs),
    /// Delete a key or a range of keys (prints the number deleted).
    #[command(visible_alias = "delete")]
    Del(DelArgs),
    /// Apply compares and requests read from stdin as one transaction.
    ///
    /// Input: compare lines (e.g. `mod("key1") > "0"`), a blank line, the
    /// requests to run if all compares hold (`put k v`, `get k [end]`,
    /// `del k [end]`), a blank line, the requests to run otherwise.
    Txn(TxnArgs),
    /// Compact the key-value history up to REVISION.
    Compact(CompactArgs),
    /// Watch a key or range and print its events until Ctrl-C; reconnects
    /// and resumes after failures.
    Watch(crate::watch::WatchArgs),
}

#[derive(Clone, Debug, Args)]
pub struct PutArgs {
    pub key: OsString,
    pub value: OsString,
    /// Also print the previous key-value pair.
    #[arg(long)]
    pub prev_kv: bool,
    /// Lease ID (hexadecimal) to attach to the key.
    #[arg(long, value_name = "HEX")]
    pub lease: Option<String>,
}

#[derive(Clone, Debug, Args)]
pub struct GetArgs {
    pub key: OsString,
    /// End of the range [KEY, END).
    #[arg(conflicts_with_all = ["prefix", "from_key"])]
    pub end: Option<OsString>,
    /// Get every key with prefix KEY.
    #[arg(long, conflicts_with = "from_key")]
    pub prefix: bool,
    /// Get every key greater than or equal to KEY.
    #[arg(long)]
    pub from_key: bool,
    /// Read at this revision (0 = latest).
    #[arg(long, value_name = "N")]
    pub rev: Option<String>,
    /// Return at most N keys (0 = no limit).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub limit: i64,
    /// Return keys only.
    #[arg(long, conflicts_with = "count_only")]
    pub keys_only: bool,
    /// Print only values (simple output).
    #[arg(long)]
    pub print_value_only: bool,
    /// Return only the number of keys.
    #[arg(long)]
    pub count_only: bool,
    /// Sort order.
    #[arg(long, value_enum, ignore_case = true)]
    pub order: Option<SortOrder>,
    /// Sort by this field.
    #[arg(long, value_enum, ignore_case = true)]
    pub sort_by: Option<SortBy>,
    /// Linearizable (l) or serializable (s).
    #[arg(long, value_enum, default_value = "l")]
    pub consistency: Consistency,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "UPPER")]
pub enum SortOrder {
    Ascend,
    Descend,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "UPPER")]
pub enum SortBy {
    Create,
    Key,
    Modify,
    Value,
    Version,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Consistency {
    #[value(name = "l")]
    Linearizable,
    #[value(name = "s")]
    Serializable,
}

#[derive(Clone, Debug, Args)]
pub struct DelArgs {
    pub key: OsString,
    /// End of the range [KEY, END).
    #[arg(conflicts_with_all = ["prefix", "from_key"])]
    pub end: Option<OsString>,
    /// Delete every key with prefix KEY.
    #[arg(long, conflicts_with = "from_key")]
    pub prefix: bool,
    /// Delete every key greater than or equal to KEY.
    #[arg(long)]
    pub from_key: bool,
    /// Also print the deleted key-value pairs.
    #[arg(long)]
    pub prev_kv: bool,
}

#[derive(Clone, Debug, Args)]
pub struct TxnArgs {
    /// Prompt for each section.
    #[arg(short, long)]
    pub interactive: bool,
}

#[derive(Clone, Debug, Args)]
pub struct CompactArgs {
    pub revision: String,
    /// Wait until the compacted data is physically removed.
    #[arg(long)]
    pub physical: bool,
}

/// Parses a revision argument: a non-negative decimal integer.
pub fn parse_revision(s: &str) -> anyhow::Result<i64> {
    match s.trim().parse::<i64>() {
        Ok(rev) if rev >= 0 => Ok(rev),
        Ok(_) => bail!("invalid revision {s:?}: must not be negative"),
        Err(e) => bail!("invalid revision {s:?}: {e}"),
    }
}

/// Parses an ID in hexadecimal, as etcdctl prints lease and member IDs
/// (`694d71ddacfda227`, an optional `0x` accepted); `what` names it in the
/// error.
pub fn parse_hex_id(s: &str, what: &str) -> anyhow::Result<u64> {
    let hex = s.trim();
    let hex = hex
        .strip_prefix("0x")
        .or_else(|| hex.strip_prefix("0X"))
        .unwrap_or(hex);
    u64::from_str_radix(hex, 16)
        .with_context(|| format!("invalid {what} ID {s:?}: expecting an ID in hex"))
}

/// Parses a lease ID in hexadecimal, as etcdctl prints them (`694d71ddacfda227`).
pub fn parse_lease(s: &str) -> anyhow::Result<i64> {
    // IDs print as unsigned hex; read them back the same way.
    parse_hex_id(s, "lease").map(|id| id as i64)
}

fn bytes(s: &OsString) -> Vec<u8> {
    s.clone().into_vec()
}

/// The key and range end for KEY [END] / --prefix / --from-key, as etcdctl
/// sets them (an empty KEY with --prefix or --from-key means every key).
pub(crate) fn key_range(
    key: &OsString,
    end: Option<&OsString>,
    prefix: bool,
    from_key: bool,
) -> (Vec<u8>, Vec<u8>) {
    let key = bytes(key);
    if (prefix || from_key) && key.is_empty() {
        return (FROM_KEY_RANGE_END.to_vec(), FROM_KEY_RANGE_END.to_vec());
    }
    if prefix {
        let end = prefix_range_end(&key);
        return (key, end);
    }
    if from_key {
        return (key, FROM_KEY_RANGE_END.to_vec());
    }
    (key, end.map(bytes).unwrap_or_default())
}

pub fn put_request(args: &PutArgs) -> anyhow::Result<PutRequest> {
    Ok(PutRequest {
        key: bytes(&args.key),
        value: bytes(&args.value),
        lease: args
            .lease
            .as_deref()
            .map(parse_lease)
            .transpose()?
            .unwrap_or(0),
        prev_kv: args.prev_kv,
        ignore_value: false,
        ignore_lease: false,
    })
}

pub fn range_request(args: &GetArgs) -> anyhow::Result<RangeRequest> {
    let (key, range_end) = key_range(&args.key, args.end.as_ref(), args.prefix, args.from_key);
    let revision = args
        .rev
        .as_deref()
        .map(parse_revision)
        .transpose()?
        .unwrap_or(0);
    if args.limit < 0 {
        bail!("invalid limit {}: must not be negative", args.limit);
    }
    let target = match args.sort_by {
        None | Some(SortBy::Key) => range_request::SortTarget::Key,
        Some(SortBy::Create) => range_request::SortTarget::Create,
        Some(SortBy::Modify) => range_request::SortTarget::Mod,
        Some(SortBy::Value) => range_request::SortTarget::Value,
        Some(SortBy::Version) => range_request::SortTarget::Version,
    };
    let mut order = match args.order {
        None => range_request::SortOrder::None,
        Some(SortOrder::Ascend) => range_request::SortOrder::Ascend,
        Some(SortOrder::Descend) => range_request::SortOrder::Descend,
    };
    // As clientv3's WithSort: keys already come back ascending.
    if target == range_request::SortTarget::Key && order == range_request::SortOrder::Ascend {
        order = range_request::SortOrder::None;
    }
    Ok(RangeRequest {
        key,
        range_end,
        limit: args.limit,
        revision,
        sort_order: order as i32,
        sort_target: target as i32,
        serializable: args.consistency == Consistency::Serializable,
        keys_only: args.keys_only,
        count_only: args.count_only,
        ..Default::default()
    })
}

pub fn delete_request(args: &DelArgs) -> DeleteRangeRequest {
    let (key, range_end) = key_range(&args.key, args.end.as_ref(), args.prefix, args.from_key);
    DeleteRangeRequest {
        key,
        range_end,
        prev_kv: args.prev_kv,
    }
}

pub async fn run(
    client: &Client,
    format: OutputFormat,
    command: KvCommand,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    match command {
        KvCommand::Put(args) => {
            let resp = client.put(put_request(&args)?).await?;
            output::write_put(out, format, &resp)?;
        }
        KvCommand::Get(args) => {
            let req = range_request(&args)?;
            if args.print_value_only && format != OutputFormat::Simple {
                bail!("--print-value-only is only for `--write-out=simple`");
            }
            let resp = client.range(req).await?;
            output::write_get(out, format, &resp, args.print_value_only, args.count_only)?;
        }
        KvCommand::Del(args) => {
            let resp = client.delete_range(delete_request(&args)).await?;
            output::write_del(out, format, &resp)?;
        }
        KvCommand::Txn(args) => {
            let stdin = io::stdin();
            let interactive = args.interactive;
            if !interactive && stdin.is_terminal() {
                eprintln!(
                    "reading a txn from stdin: compares, a blank line, success requests, \
                     a blank line, failure requests (-i prompts for each)"
                );
            }
            let req = txn::parse_txn(stdin.lock(), |section| {
                if interactive {
                    // Prompts go where etcdctl prints them: stdout.
                    let mut stdout = io::stdout();
                    let _ = writeln!(stdout, "{}", section.prompt());
                    let _ = stdout.flush();
                }
            })?;
            let resp = client.txn(req).await?;
            output::write_txn(out, format, &resp)?;
        }
        KvCommand::Compact(args) => {
            let revision = parse_revision(&args.revision)?;
            client
                .compact(CompactionRequest {
                    revision,
                    physical: args.physical,
                })
                .await?;
            writeln!(out, "compacted revision {revision}")?;
        }
        KvCommand::Watch(args) => crate::watch::run(client, format, args, out).await?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    #[command(no_binary_name = true)]
    enum Cmd {
        Put(PutArgs),
        Get(GetArgs),
        Del(DelArgs),
    }

    fn get(args: &[&str]) -> RangeRequest {
        match Cmd::try_parse_from(args).unwrap() {
            Cmd::Get(a) => range_request(&a).unwrap(),
            other => panic!("{other:?}"),
        }
    }

    fn del(args: &[&str]) -> DeleteRangeRequest {
        match Cmd::try_parse_from(args).unwrap() {
            Cmd::Del(a) => delete_request(&a),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn revisions() {
        assert_eq!(parse_revision("42").unwrap(), 42);
        assert_eq!(parse_revision("0").unwrap(), 0);
        assert_eq!(
            parse_revision("abc").unwrap_err().to_string(),
            "invalid revision \"abc\": invalid digit found in string"
        );
        assert!(
            parse_revision("-3")
                .unwrap_err()
                .to_string()
                .starts_with("invalid revision \"-3\"")
        );
    }

    #[test]
    fn leases_are_hex() {
        assert_eq!(parse_lease("694d71ddacfda227").unwrap(), 0x694d71ddacfda227);
        assert_eq!(parse_lease("0x10").unwrap(), 16);
        assert_eq!(parse_lease("ffffffffffffffff").unwrap(), -1);
        assert!(
            parse_lease("xyz")
                .unwrap_err()
                .to_string()
                .starts_with("invalid lease ID \"xyz\"")
        );
    }

    #[test]
    fn get_ranges() {
        let r = get(&["get", "foo"]);
        assert_eq!(
            (r.key.as_slice(), r.range_end.as_slice()),
            (&b"foo"[..], &b""[..])
        );
        assert!(!r.serializable);
        let r = get(&["get", "a", "c"]);
        assert_eq!(r.range_end, b"c");
        let r = get(&["get", "foo", "--prefix"]);
        assert_eq!(r.range_end, b"fop");
        let r = get(&["get", "", "--prefix"]);
        assert_eq!(
            (r.key.as_slice(), r.range_end.as_slice()),
            (&b"\0"[..], &b"\0"[..])
        );
        let r = get(&["get", "b", "--from-key"]);
        assert_eq!(
            (r.key.as_slice(), r.range_end.as_slice()),
            (&b"b"[..], &b"\0"[..])
        );
        let r = get(&[
            "get",
            "foo",
            "--rev",
            "7",
            "--limit",
            "2",
            "--consistency",
            "s",
        ]);
        assert_eq!((r.revision, r.limit, r.serializable), (7, 2, true));
        let r = get(&["get", "foo", "--keys-only"]);
        assert!(r.keys_only);
        let r = get(&["get", "foo", "--count-only"]);
        assert!(r.count_only);
    }

    #[test]
    fn get_sorting_follows_clientv3() {
        let r = get(&["get", "a", "--prefix", "--order", "DESCEND"]);
        assert_eq!(r.sort_order, range_request::SortOrder::Descend as i32);
        assert_eq!(r.sort_target, range_request::SortTarget::Key as i32);
        let r = get(&["get", "a", "--prefix", "--order", "ascend"]);
        assert_eq!(r.sort_order, range_request::SortOrder::None as i32);
        let r = get(&["get", "a", "--prefix", "--sort-by", "MODIFY"]);
        assert_eq!(r.sort_target, range_request::SortTarget::Mod as i32);
        assert_eq!(r.sort_order, range_request::SortOrder::None as i32);
        let r = get(&[
            "get",
            "a",
            "--prefix",
            "--sort-by",
            "create",
            "--order",
            "ASCEND",
        ]);
        assert_eq!(r.sort_target, range_request::SortTarget::Create as i32);
        assert_eq!(r.sort_order, range_request::SortOrder::Ascend as i32);
    }

    #[test]
    fn get_refuses_bad_arguments() {
        for bad in [
            &["get", "a", "--prefix", "--from-key"][..],
            &["get", "a", "b", "--prefix"],
            &["get", "a", "--keys-only", "--count-only"],
            &["get", "a", "--order", "UP"],
            &["get", "a", "--consistency", "x"],
            &["get"],
        ] {
            assert!(Cmd::try_parse_from(bad).is_err(), "{bad:?}");
        }
        match Cmd::try_parse_from(["get", "a", "--rev", "abc"]).unwrap() {
            Cmd::Get(a) => assert_eq!(
                range_request(&a).unwrap_err().to_string(),
                "invalid revision \"abc\": invalid digit found in string"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn del_ranges() {
        let d = del(&["del", "k"]);
        assert_eq!(
            (d.key.as_slice(), d.range_end.as_slice(), d.prev_kv),
            (&b"k"[..], &b""[..], false)
        );
        let d = del(&["del", "k", "--prefix", "--prev-kv"]);
        assert_eq!((d.range_end.as_slice(), d.prev_kv), (&b"l"[..], true));
        let d = del(&["del", "a", "z"]);
        assert_eq!(d.range_end, b"z");
        let d = del(&["del", "", "--from-key"]);
        assert_eq!(
            (d.key.as_slice(), d.range_end.as_slice()),
            (&b"\0"[..], &b"\0"[..])
        );
    }

    #[test]
    fn puts() {
        match Cmd::try_parse_from(["put", "k", "v", "--lease", "1f", "--prev-kv"]).unwrap() {
            Cmd::Put(a) => {
                let p = put_request(&a).unwrap();
                assert_eq!(
                    (p.key.as_slice(), p.value.as_slice()),
                    (&b"k"[..], &b"v"[..])
                );
                assert_eq!((p.lease, p.prev_kv), (0x1f, true));
            }
            other => panic!("{other:?}"),
        }
        // A value that starts with '-' needs `--`, as with etcdctl.
        match Cmd::try_parse_from(["put", "k", "--", "-v"]).unwrap() {
            Cmd::Put(a) => assert_eq!(put_request(&a).unwrap().value, b"-v"),
            other => panic!("{other:?}"),
        }
        assert!(Cmd::try_parse_from(["put", "k"]).is_err());
    }
}
