//! Output formats, as etcdctl prints them.
//!
//! - `simple`: etcdctl's text (key line, value line; `OK`; comma lines).
//! - `json`: etcdctl's JSON: Go's encoding of the response messages, field
//!   names as etcd's Go structs spell them, zero values omitted, keys and
//!   values base64.
//! - `table`: etcdctl's tablewriter tables, drawn the same way; for kv
//!   commands (which etcdctl cannot print as tables) the key-values are the
//!   table.
//!
//! Everything writes to a `Write` so tests can read it back.

use std::io::{self, Write};

use clap::ValueEnum;
use skiff_proto::etcdserverpb::{
    AlarmResponse, AlarmType, DeleteRangeResponse, HashKvResponse, Member, MemberAddResponse,
    MemberListResponse, MoveLeaderResponse, PutResponse, RangeResponse, ResponseHeader,
    StatusResponse, TxnResponse, WatchResponse, response_op::Response,
};
use skiff_proto::mvccpb::KeyValue;

/// `-w/--write-out`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Simple,
    Json,
    Table,
}

// ---------------------------------------------------------------- kv

/// `get`: every key-value (or only values, or only the count).
pub fn write_get(
    w: &mut dyn Write,
    format: OutputFormat,
    resp: &RangeResponse,
    value_only: bool,
    count_only: bool,
) -> io::Result<()> {
    match format {
        OutputFormat::Simple if count_only => writeln!(w, "{}", resp.count),
        OutputFormat::Simple => write_kvs_simple(w, &resp.kvs, value_only),
        OutputFormat::Json => write_json(w, &range_json(resp)),
        OutputFormat::Table if count_only => writeln!(w, "{}", resp.count),
        OutputFormat::Table => write_kv_table(w, &resp.kvs),
    }
}

/// `put`: `OK`, then the previous key-value if asked for.
pub fn write_put(w: &mut dyn Write, format: OutputFormat, resp: &PutResponse) -> io::Result<()> {
    match format {
        OutputFormat::Json => write_json(w, &put_json(resp)),
        OutputFormat::Simple | OutputFormat::Table => {
            writeln!(w, "OK")?;
            match (&resp.prev_kv, format) {
                (Some(kv), OutputFormat::Table) => write_kv_table(w, std::slice::from_ref(kv)),
                (Some(kv), _) => write_kv_simple(w, kv, false),
                (None, _) => Ok(()),
            }
        }
    }
}

/// `del`: the number deleted, then the previous key-values if asked for.
pub fn write_del(
    w: &mut dyn Write,
    format: OutputFormat,
    resp: &DeleteRangeResponse,
) -> io::Result<()> {
    match format {
        OutputFormat::Json => write_json(w, &del_json(resp)),
        OutputFormat::Simple => {
            writeln!(w, "{}", resp.deleted)?;
            write_kvs_simple(w, &resp.prev_kvs, false)
        }
        OutputFormat::Table => {
            writeln!(w, "{}", resp.deleted)?;
            if resp.prev_kvs.is_empty() {
                Ok(())
            } else {
                write_kv_table(w, &resp.prev_kvs)
            }
        }
    }
}

/// `txn`: `SUCCESS` or `FAILURE`, then a blank line and the result of each
/// op, like etcdctl.
pub fn write_txn(w: &mut dyn Write, format: OutputFormat, resp: &TxnResponse) -> io::Result<()> {
    if format == OutputFormat::Json {
        return write_json(w, &txn_json(resp));
    }
    writeln!(w, "{}", if resp.succeeded { "SUCCESS" } else { "FAILURE" })?;
    for op in &resp.responses {
        writeln!(w)?;
        match &op.response {
            Some(Response::ResponseRange(r)) => write_get(w, format, r, false, false)?,
            Some(Response::ResponsePut(r)) => write_put(w, format, r)?,
            Some(Response::ResponseDeleteRange(r)) => write_del(w, format, r)?,
            Some(Response::ResponseTxn(r)) => write_txn(w, format, r)?,
            None => writeln!(w, "unexpected empty response")?,
        }
    }
    Ok(())
}

fn write_kvs_simple(w: &mut dyn Write, kvs: &[KeyValue], value_only: bool) -> io::Result<()> {
    kvs.iter()
        .try_for_each(|kv| write_kv_simple(w, kv, value_only))
}

/// etcdctl's `printKV`: the raw key bytes on one line, the value on the next.
fn write_kv_simple(w: &mut dyn Write, kv: &KeyValue, value_only: bool) -> io::Result<()> {
    if !value_only {
        w.write_all(&kv.key)?;
        w.write_all(b"\n")?;
    }
    w.write_all(&kv.value)?;
    w.write_all(b"\n")
}

fn write_kv_table(w: &mut dyn Write, kvs: &[KeyValue]) -> io::Result<()> {
    let rows = kvs.iter().map(|kv| {
        vec![
            String::from_utf8_lossy(&kv.key).into_owned(),
            String::from_utf8_lossy(&kv.value).into_owned(),
            kv.create_revision.to_string(),
            kv.mod_revision.to_string(),
            kv.version.to_string(),
            format!("{:x}", kv.lease),
        ]
    });
    write_table(
        w,
        &["KEY", "VALUE", "CREATE REV", "MOD REV", "VERSION", "LEASE"],
        Align::Left,
        rows,
    )
}

// ---------------------------------------------------------------- cluster

/// etcdctl's member table rows: hex ID, started/unstarted, name, peer and
/// client URLs, learner flag.
fn member_rows(members: &[Member]) -> Vec<Vec<String>> {
    members
        .iter()
        .map(|m| {
            vec![
                format!("{:x}", m.id),
                if m.name.is_empty() {
                    "unstarted"
                } else {
                    "started"
                }
                .to_string(),
                m.name.clone(),
                m.peer_ur_ls.join(","),
                m.client_ur_ls.join(","),
                m.is_learner.to_string(),
            ]
        })
        .collect()
}

/// `member list`.
pub fn write_member_list(
    w: &mut dyn Write,
    format: OutputFormat,
    resp: &MemberListResponse,
) -> io::Result<()> {
    match format {
        OutputFormat::Simple => member_rows(&resp.members)
            .iter()
            .try_for_each(|row| writeln!(w, "{}", row.join(", "))),
        OutputFormat::Json => write_json(w, &member_list_json(resp)),
        OutputFormat::Table => write_table(
            w,
            &[
                "ID",
                "STATUS",
                "NAME",
                "PEER ADDRS",
                "CLIENT ADDRS",
                "IS LEARNER",
            ],
            Align::Right,
            member_rows(&resp.members),
        ),
    }
}

/// `member add`: as etcdctl, the new member and the settings to start it
/// with (skiff-store reads them from these environment variables).
pub fn write_member_added(
    w: &mut dyn Write,
    format: OutputFormat,
    name: &str,
    resp: &MemberAddResponse,
) -> io::Result<()> {
    let added = resp.member.clone().unwrap_or_default();
    if format == OutputFormat::Json {
        let json = Obj::new()
            .opt("header", header_json(&resp.header))
            .opt("member", Some(member_json(&added)))
            .arr("members", resp.members.iter().map(member_json).collect())
            .build();
        return write_json(w, &json);
    }
    let cluster = resp.header.as_ref().map_or(0, |h| h.cluster_id);
    writeln!(w, "Member {:16x} added to cluster {cluster:16x}", added.id)?;
    let mut initial = Vec::new();
    for m in &resp.members {
        let member_name = if m.id == added.id { name } else { &m.name };
        for url in &m.peer_ur_ls {
            initial.push(format!("{member_name}={url}"));
        }
    }
    writeln!(w)?;
    writeln!(w, "SKIFF_NAME=\"{name}\"")?;
    writeln!(w, "SKIFF_INITIAL_CLUSTER=\"{}\"", initial.join(","))?;
    writeln!(
        w,
        "SKIFF_INITIAL_ADVERTISE_PEER_URLS=\"{}\"",
        added.peer_ur_ls.join(",")
    )?;
    writeln!(w, "SKIFF_INITIAL_CLUSTER_STATE=\"existing\"")
}

/// `member remove|update|promote`: "Member ID removed from cluster ID".
pub fn write_member_changed(
    w: &mut dyn Write,
    format: OutputFormat,
    what: &str,
    id: u64,
    cluster: u64,
    members: &[Member],
) -> io::Result<()> {
    if format == OutputFormat::Json {
        let header = Some(ResponseHeader {
            cluster_id: cluster,
            ..Default::default()
        });
        return write_json(
            w,
            &member_list_json(&MemberListResponse {
                header,
                members: members.to_vec(),
            }),
        );
    }
    writeln!(w, "Member {id:16x} {what} cluster {cluster:16x}")
}

/// One endpoint's answer to Maintenance.Status.
#[derive(Debug)]
pub struct EndpointStatus {
    pub endpoint: String,
    pub status: StatusResponse,
}

fn status_row(s: &EndpointStatus) -> Vec<String> {
    let r = &s.status;
    let member_id = r.header.as_ref().map_or(0, |h| h.member_id);
    vec![
        s.endpoint.clone(),
        format!("{member_id:x}"),
        r.version.clone(),
        human_bytes(u64::try_from(r.db_size).unwrap_or(0)),
        (r.leader != 0 && r.leader == member_id).to_string(),
        r.is_learner.to_string(),
        r.raft_term.to_string(),
        r.raft_index.to_string(),
        r.raft_applied_index.to_string(),
        r.errors.join(", "),
    ]
}

/// `endpoint status`.
pub fn write_endpoint_status(
    w: &mut dyn Write,
    format: OutputFormat,
    list: &[EndpointStatus],
) -> io::Result<()> {
    match format {
        OutputFormat::Simple => list
            .iter()
            .try_for_each(|s| writeln!(w, "{}", status_row(s).join(", "))),
        OutputFormat::Json => write_json(
            w,
            &Json::Arr(
                list.iter()
                    .map(|s| {
                        Obj::new()
                            .str("Endpoint", &s.endpoint)
                            .put("Status", status_json(&s.status))
                            .build()
                    })
                    .collect(),
            ),
        ),
        OutputFormat::Table => write_table(
            w,
            &[
                "ENDPOINT",
                "ID",
                "VERSION",
                "DB SIZE",
                "IS LEADER",
                "IS LEARNER",
                "RAFT TERM",
                "RAFT INDEX",
                "RAFT APPLIED INDEX",
                "ERRORS",
            ],
            Align::Right,
            list.iter().map(status_row),
        ),
    }
}

/// What `snapshot status` shows (etcdctl's `snapshot.Status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DbStatus {
    pub hash: u32,
    pub revision: i64,
    pub total_keys: u64,
    pub total_size: u64,
}

/// `snapshot status`: etcdctl's comma line, JSON object (every field, no
/// omitempty) or table.
pub fn write_db_status(w: &mut dyn Write, format: OutputFormat, s: &DbStatus) -> io::Result<()> {
    let row = vec![
        format!("{:x}", s.hash),
        s.revision.to_string(),
        s.total_keys.to_string(),
        human_bytes(s.total_size),
    ];
    match format {
        OutputFormat::Simple => writeln!(w, "{}", row.join(", ")),
        OutputFormat::Json => write_json(
            w,
            &Obj::new()
                .put("hash", Json::Uint(u64::from(s.hash)))
                .put("revision", Json::Int(s.revision))
                .put("totalKey", Json::Uint(s.total_keys))
                .put("totalSize", Json::Uint(s.total_size))
                .build(),
        ),
        OutputFormat::Table => write_table(
            w,
            &["HASH", "REVISION", "TOTAL KEYS", "TOTAL SIZE"],
            Align::Right,
            [row],
        ),
    }
}

/// One endpoint's health check.
#[derive(Debug)]
pub struct EndpointHealth {
    pub endpoint: String,
    pub healthy: bool,
    /// Go-formatted duration of the check, e.g. `1.234ms`.
    pub took: String,
    pub error: Option<String>,
}

/// The line etcdctl prints for one endpoint's health.
pub fn health_line(h: &EndpointHealth) -> String {
    match &h.error {
        None => format!(
            "{} is healthy: successfully committed proposal: took = {}",
            h.endpoint, h.took
        ),
        Some(err) => format!(
            "{} is unhealthy: failed to commit proposal: {}",
            h.endpoint, err
        ),
    }
}

/// `endpoint health` in the json and table formats (simple is per line).
pub fn write_endpoint_health(
    w: &mut dyn Write,
    format: OutputFormat,
    list: &[EndpointHealth],
) -> io::Result<()> {
    match format {
        OutputFormat::Simple => list
            .iter()
            .try_for_each(|h| writeln!(w, "{}", health_line(h))),
        OutputFormat::Json => write_json(
            w,
            &Json::Arr(
                list.iter()
                    .map(|h| {
                        let mut o = Obj::new()
                            .str("endpoint", &h.endpoint)
                            .put("health", Json::Bool(h.healthy))
                            .str("took", &h.took);
                        if let Some(e) = &h.error {
                            o = o.str("error", e);
                        }
                        o.build()
                    })
                    .collect(),
            ),
        ),
        OutputFormat::Table => write_table(
            w,
            &["ENDPOINT", "HEALTH", "TOOK", "ERROR"],
            Align::Right,
            list.iter().map(|h| {
                vec![
                    h.endpoint.clone(),
                    h.healthy.to_string(),
                    h.took.clone(),
                    h.error.clone().unwrap_or_default(),
                ]
            }),
        ),
    }
}

// ---------------------------------------------------------------- maintenance

/// One endpoint's answer to Maintenance.HashKV.
#[derive(Debug)]
pub struct EndpointHashKv {
    pub endpoint: String,
    pub resp: HashKvResponse,
}

/// `endpoint hashkv`: etcdctl 3.4's columns, endpoint and hash.
pub fn write_endpoint_hash_kv(
    w: &mut dyn Write,
    format: OutputFormat,
    list: &[EndpointHashKv],
) -> io::Result<()> {
    let rows = list
        .iter()
        .map(|h| vec![h.endpoint.clone(), h.resp.hash.to_string()]);
    match format {
        OutputFormat::Simple => rows
            .into_iter()
            .try_for_each(|row| writeln!(w, "{}", row.join(", "))),
        OutputFormat::Json => write_json(
            w,
            &Json::Arr(
                list.iter()
                    .map(|h| {
                        Obj::new()
                            .str("Endpoint", &h.endpoint)
                            .put("HashKV", hash_kv_json(&h.resp))
                            .build()
                    })
                    .collect(),
            ),
        ),
        OutputFormat::Table => write_table(w, &["ENDPOINT", "HASH"], Align::Right, rows),
    }
}

/// An alarm's type as etcd names it (`NOSPACE`), or its number if unknown.
fn alarm_name(alarm: i32) -> String {
    AlarmType::try_from(alarm).map_or_else(|_| alarm.to_string(), |t| t.as_str_name().to_string())
}

/// `alarm list` and `alarm disarm`: in the simple format one line per alarm
/// as etcdctl prints it (Go's compact protobuf text, member ID in decimal,
/// a space after each field); as a table, the member ID in hex.
pub fn write_alarms(
    w: &mut dyn Write,
    format: OutputFormat,
    resp: &AlarmResponse,
) -> io::Result<()> {
    match format {
        OutputFormat::Simple => resp.alarms.iter().try_for_each(|a| {
            writeln!(w, "memberID:{} alarm:{} ", a.member_id, alarm_name(a.alarm))
        }),
        OutputFormat::Json => {
            let alarms = resp
                .alarms
                .iter()
                .map(|a| {
                    Obj::new()
                        .uint("memberID", a.member_id)
                        .int("alarm", i64::from(a.alarm))
                        .build()
                })
                .collect();
            write_json(
                w,
                &Obj::new()
                    .opt("header", header_json(&resp.header))
                    .arr("alarms", alarms)
                    .build(),
            )
        }
        OutputFormat::Table => write_table(
            w,
            &["MEMBER ID", "ALARM"],
            Align::Right,
            resp.alarms
                .iter()
                .map(|a| vec![format!("{:x}", a.member_id), alarm_name(a.alarm)]),
        ),
    }
}

/// `move-leader -w json`: the response, as etcdctl prints it.
pub fn write_move_leader_json(w: &mut dyn Write, resp: &MoveLeaderResponse) -> io::Result<()> {
    write_json(
        w,
        &Obj::new().opt("header", header_json(&resp.header)).build(),
    )
}

// ---------------------------------------------------------------- tables

/// How the cells (not the headers, always centered) of a table line up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Align {
    Left,
    /// etcdctl's tables (member list, endpoint status and health).
    Right,
}

/// A table as etcdctl's tablewriter draws it: `+---+` borders, a rule under
/// the header, headers centered (extra space on the right), one space of
/// padding in every cell.
fn write_table(
    w: &mut dyn Write,
    header: &[&str],
    align: Align,
    rows: impl IntoIterator<Item = Vec<String>>,
) -> io::Result<()> {
    let rows: Vec<Vec<String>> = rows.into_iter().collect();
    let width = |s: &str| s.chars().count();
    let widths: Vec<usize> = header
        .iter()
        .enumerate()
        .map(|(i, h)| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| width(c))
                .chain(std::iter::once(width(h)))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let rule: String = widths
        .iter()
        .map(|w| format!("+{}", "-".repeat(w + 2)))
        .chain(std::iter::once("+".to_string()))
        .collect();
    let line = |cells: &mut dyn Iterator<Item = String>| -> String {
        cells
            .map(|c| format!("| {c} "))
            .chain(std::iter::once("|".to_string()))
            .collect()
    };
    let centered = header.iter().zip(&widths).map(|(h, &w)| {
        let gap = w - width(h);
        format!("{}{h}{}", " ".repeat(gap / 2), " ".repeat(gap - gap / 2))
    });
    writeln!(w, "{rule}")?;
    writeln!(w, "{}", line(&mut centered.into_iter()))?;
    writeln!(w, "{rule}")?;
    for row in &rows {
        let mut cells = widths.iter().enumerate().map(|(i, &w)| {
            let cell = row.get(i).map_or("", String::as_str);
            match align {
                Align::Left => format!("{cell:<w$}"),
                Align::Right => format!("{cell:>w$}"),
            }
        });
        writeln!(w, "{}", line(&mut cells))?;
    }
    writeln!(w, "{rule}")
}

/// go-humanize's `Bytes`: SI units, e.g. `20 kB`, `1.5 MB`, `7 B`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    if n < 10 {
        return format!("{n} B");
    }
    let mut exp = 0;
    let mut scaled = n as f64;
    while scaled >= 1000.0 && exp < UNITS.len() - 1 {
        scaled /= 1000.0;
        exp += 1;
    }
    let rounded = (scaled * 10.0 + 0.5).floor() / 10.0;
    if rounded < 10.0 {
        format!("{rounded:.1} {}", UNITS[exp])
    } else {
        format!("{rounded:.0} {}", UNITS[exp])
    }
}

// ---------------------------------------------------------------- json

/// A JSON value whose objects keep their field order (etcdctl prints Go
/// struct order).
#[derive(Clone, Debug, PartialEq)]
pub enum Json {
    Bool(bool),
    Int(i64),
    Uint(u64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(&'static str, Json)>),
}

impl Json {
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.render_into(&mut out);
        out
    }

    fn render_into(&self, out: &mut String) {
        match self {
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Int(n) => out.push_str(&n.to_string()),
            Json::Uint(n) => out.push_str(&n.to_string()),
            Json::Str(s) => push_json_string(out, s),
            Json::Arr(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.render_into(out);
                }
                out.push(']');
            }
            Json::Obj(fields) => {
                out.push('{');
                for (i, (name, value)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    push_json_string(out, name);
                    out.push(':');
                    value.render_into(out);
                }
                out.push('}');
            }
        }
    }
}

/// A string as Go's encoding/json writes it (HTML-safe escapes included).
fn push_json_string(out: &mut String, s: &str) {
    let quoted = serde_json::Value::String(s.to_string()).to_string();
    for c in quoted.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
}

/// Builds an object, leaving out zero values like Go's `omitempty`.
#[derive(Default)]
struct Obj(Vec<(&'static str, Json)>);

impl Obj {
    fn new() -> Self {
        Obj::default()
    }
    fn put(mut self, name: &'static str, value: Json) -> Self {
        self.0.push((name, value));
        self
    }
    fn int(self, name: &'static str, n: i64) -> Self {
        if n == 0 {
            self
        } else {
            self.put(name, Json::Int(n))
        }
    }
    fn uint(self, name: &'static str, n: u64) -> Self {
        if n == 0 {
            self
        } else {
            self.put(name, Json::Uint(n))
        }
    }
    fn flag(self, name: &'static str, b: bool) -> Self {
        if b {
            self.put(name, Json::Bool(true))
        } else {
            self
        }
    }
    fn str(self, name: &'static str, s: &str) -> Self {
        if s.is_empty() {
            self
        } else {
            self.put(name, Json::Str(s.to_string()))
        }
    }
    fn bytes(self, name: &'static str, b: &[u8]) -> Self {
        if b.is_empty() {
            self
        } else {
            self.put(name, Json::Str(base64(b)))
        }
    }
    fn strs(self, name: &'static str, items: &[String]) -> Self {
        if items.is_empty() {
            self
        } else {
            self.put(
                name,
                Json::Arr(items.iter().map(|s| Json::Str(s.clone())).collect()),
            )
        }
    }
    fn arr(self, name: &'static str, items: Vec<Json>) -> Self {
        if items.is_empty() {
            self
        } else {
            self.put(name, Json::Arr(items))
        }
    }
    fn opt(self, name: &'static str, value: Option<Json>) -> Self {
        match value {
            Some(v) => self.put(name, v),
            None => self,
        }
    }
    fn build(self) -> Json {
        Json::Obj(self.0)
    }
}

fn write_json(w: &mut dyn Write, value: &Json) -> io::Result<()> {
    writeln!(w, "{}", value.render())
}

fn header_json(h: &Option<ResponseHeader>) -> Option<Json> {
    h.as_ref().map(|h| {
        Obj::new()
            .uint("cluster_id", h.cluster_id)
            .uint("member_id", h.member_id)
            .int("revision", h.revision)
            .uint("raft_term", h.raft_term)
            .build()
    })
}

fn kv_json(kv: &KeyValue) -> Json {
    Obj::new()
        .bytes("key", &kv.key)
        .int("create_revision", kv.create_revision)
        .int("mod_revision", kv.mod_revision)
        .int("version", kv.version)
        .bytes("value", &kv.value)
        .int("lease", kv.lease)
        .build()
}

/// `watch -w json`: Go's encoding of clientv3's `WatchResponse` (the
/// header and the flags have no JSON tags, so they keep their Go names and
/// are always there; events use mvccpb's tags, `type` omitted for PUT).
pub fn watch_json(r: &WatchResponse) -> Json {
    let header = header_json(&r.header).unwrap_or_else(|| Obj::new().build());
    let events = r
        .events
        .iter()
        .map(|e| {
            Obj::new()
                .int("type", i64::from(e.r#type))
                .opt("kv", e.kv.as_ref().map(kv_json))
                .opt("prev_kv", e.prev_kv.as_ref().map(kv_json))
                .build()
        })
        .collect();
    Obj::new()
        .put("Header", header)
        .put("Events", Json::Arr(events))
        .put("CompactRevision", Json::Int(r.compact_revision))
        .put("Canceled", Json::Bool(r.canceled))
        .put("Created", Json::Bool(r.created))
        .build()
}

pub fn write_watch_json(w: &mut dyn Write, r: &WatchResponse) -> io::Result<()> {
    write_json(w, &watch_json(r))
}

fn range_json(r: &RangeResponse) -> Json {
    Obj::new()
        .opt("header", header_json(&r.header))
        .arr("kvs", r.kvs.iter().map(kv_json).collect())
        .flag("more", r.more)
        .int("count", r.count)
        .build()
}

fn put_json(r: &PutResponse) -> Json {
    Obj::new()
        .opt("header", header_json(&r.header))
        .opt("prev_kv", r.prev_kv.as_ref().map(kv_json))
        .build()
}

fn del_json(r: &DeleteRangeResponse) -> Json {
    Obj::new()
        .opt("header", header_json(&r.header))
        .int("deleted", r.deleted)
        .arr("prev_kvs", r.prev_kvs.iter().map(kv_json).collect())
        .build()
}

/// etcdctl encodes the oneof as Go does: `{"Response":{"ResponsePut":{...}}}`.
fn txn_json(r: &TxnResponse) -> Json {
    let responses = r
        .responses
        .iter()
        .map(|op| {
            let inner = match &op.response {
                Some(Response::ResponseRange(x)) => Some(("ResponseRange", range_json(x))),
                Some(Response::ResponsePut(x)) => Some(("ResponsePut", put_json(x))),
                Some(Response::ResponseDeleteRange(x)) => {
                    Some(("ResponseDeleteRange", del_json(x)))
                }
                Some(Response::ResponseTxn(x)) => Some(("ResponseTxn", txn_json(x))),
                None => None,
            };
            Obj::new()
                .opt("Response", inner.map(|(k, v)| Json::Obj(vec![(k, v)])))
                .build()
        })
        .collect();
    Obj::new()
        .opt("header", header_json(&r.header))
        .flag("succeeded", r.succeeded)
        .arr("responses", responses)
        .build()
}

fn member_json(m: &Member) -> Json {
    Obj::new()
        .uint("ID", m.id)
        .str("name", &m.name)
        .strs("peerURLs", &m.peer_ur_ls)
        .strs("clientURLs", &m.client_ur_ls)
        .flag("isLearner", m.is_learner)
        .build()
}

fn member_list_json(r: &MemberListResponse) -> Json {
    Obj::new()
        .opt("header", header_json(&r.header))
        .arr("members", r.members.iter().map(member_json).collect())
        .build()
}

fn status_json(r: &StatusResponse) -> Json {
    Obj::new()
        .opt("header", header_json(&r.header))
        .str("version", &r.version)
        .int("dbSize", r.db_size)
        .uint("leader", r.leader)
        .uint("raftIndex", r.raft_index)
        .uint("raftTerm", r.raft_term)
        .uint("raftAppliedIndex", r.raft_applied_index)
        .strs("errors", &r.errors)
        .int("dbSizeInUse", r.db_size_in_use)
        .flag("isLearner", r.is_learner)
        .build()
}

fn hash_kv_json(r: &HashKvResponse) -> Json {
    Obj::new()
        .opt("header", header_json(&r.header))
        .uint("hash", u64::from(r.hash))
        .int("compact_revision", r.compact_revision)
        .int("hash_revision", r.hash_revision)
        .build()
}

/// Standard base64 with padding, as Go encodes `[]byte` in JSON.
pub fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 0x3f) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_proto::etcdserverpb::{AlarmMember, ResponseOp};

    fn header() -> Option<ResponseHeader> {
        Some(ResponseHeader {
            cluster_id: 14841639068965178418,
            member_id: 10276657743932975437,
            revision: 5,
            raft_term: 2,
        })
    }

    fn kv(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
            create_revision: 2,
            mod_revision: 3,
            version: 2,
            lease: 0,
        }
    }

    fn out(f: impl FnOnce(&mut Vec<u8>) -> io::Result<()>) -> String {
        let mut buf = Vec::new();
        f(&mut buf).unwrap();
        String::from_utf8(buf).unwrap()
    }

    fn range() -> RangeResponse {
        RangeResponse {
            header: header(),
            kvs: vec![kv("foo", "bar"), kv("foo2", "baz")],
            more: false,
            count: 2,
        }
    }

    #[test]
    fn base64_matches_go() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foob"), "Zm9vYg==");
        assert_eq!(base64(b"bar"), "YmFy");
        assert_eq!(base64(&[0xff, 0xfe, 0x00]), "//4A");
    }

    #[test]
    fn human_bytes_matches_go_humanize() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(9), "9 B");
        assert_eq!(human_bytes(10), "10 B");
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1000), "1.0 kB");
        assert_eq!(human_bytes(1500), "1.5 kB");
        assert_eq!(human_bytes(20480), "20 kB");
        assert_eq!(human_bytes(24576), "25 kB");
        assert_eq!(human_bytes(2_147_483_648), "2.1 GB");
    }

    #[test]
    fn get_simple_prints_key_then_value() {
        let r = range();
        assert_eq!(
            out(|w| write_get(w, OutputFormat::Simple, &r, false, false)),
            "foo\nbar\nfoo2\nbaz\n"
        );
        assert_eq!(
            out(|w| write_get(w, OutputFormat::Simple, &r, true, false)),
            "bar\nbaz\n"
        );
        let count = RangeResponse {
            kvs: vec![],
            ..range()
        };
        assert_eq!(
            out(|w| write_get(w, OutputFormat::Simple, &count, false, true)),
            "2\n"
        );
    }

    #[test]
    fn get_json_matches_etcdctl() {
        let r = RangeResponse {
            kvs: vec![kv("foo", "bar")],
            count: 1,
            ..range()
        };
        assert_eq!(
            out(|w| write_get(w, OutputFormat::Json, &r, false, false)),
            concat!(
                r#"{"header":{"cluster_id":14841639068965178418,"member_id":10276657743932975437,"revision":5,"raft_term":2},"#,
                r#""kvs":[{"key":"Zm9v","create_revision":2,"mod_revision":3,"version":2,"value":"YmFy"}],"count":1}"#,
                "\n"
            )
        );
        let empty = RangeResponse {
            header: header(),
            kvs: vec![],
            more: false,
            count: 0,
        };
        assert_eq!(
            out(|w| write_get(w, OutputFormat::Json, &empty, false, false)),
            concat!(
                r#"{"header":{"cluster_id":14841639068965178418,"member_id":10276657743932975437,"revision":5,"raft_term":2}}"#,
                "\n"
            )
        );
    }

    #[test]
    fn get_table_has_the_columns() {
        let text = out(|w| write_get(w, OutputFormat::Table, &range(), false, false));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 6, "{text}");
        assert!(lines[0].starts_with("+-") && lines[0].ends_with("-+"));
        for col in ["KEY", "VALUE", "CREATE REV", "MOD REV", "VERSION", "LEASE"] {
            assert!(lines[1].contains(col), "{col} in {}", lines[1]);
        }
        assert!(lines[2].starts_with("+-"));
        assert!(
            lines[3].starts_with("| foo ") && lines[3].contains("| bar "),
            "{text}"
        );
        assert!(lines[4].starts_with("| foo2 "));
        assert_eq!(lines[5], lines[0]);
    }

    #[test]
    fn tables_are_drawn_like_tablewriter() {
        let text = out(|w| write_member_list(w, OutputFormat::Table, &members()));
        assert_eq!(
            text,
            "\
+------------------+-----------+------+------------------------+-----------------------+------------+
|        ID        |  STATUS   | NAME |       PEER ADDRS       |     CLIENT ADDRS      | IS LEARNER |
+------------------+-----------+------+------------------------+-----------------------+------------+
| 8e9e05c52164694d |   started |   s1 |  http://127.0.0.1:2380 | http://127.0.0.1:2379 |      false |
| 91bc3c398fb3c146 | unstarted |      | http://127.0.0.1:22380 |                       |       true |
+------------------+-----------+------+------------------------+-----------------------+------------+
"
        );
        let empty = out(|w| write_endpoint_status(w, OutputFormat::Table, &[]));
        assert_eq!(
            empty.lines().nth(1).unwrap(),
            "| ENDPOINT | ID | VERSION | DB SIZE | IS LEADER | IS LEARNER | RAFT TERM | RAFT INDEX | RAFT APPLIED INDEX | ERRORS |"
        );
        assert_eq!(empty.lines().count(), 4);
    }

    #[test]
    fn put_and_del_simple() {
        let put = PutResponse {
            header: header(),
            prev_kv: None,
        };
        assert_eq!(out(|w| write_put(w, OutputFormat::Simple, &put)), "OK\n");
        let put = PutResponse {
            header: header(),
            prev_kv: Some(kv("foo", "old")),
        };
        assert_eq!(
            out(|w| write_put(w, OutputFormat::Simple, &put)),
            "OK\nfoo\nold\n"
        );
        let del = DeleteRangeResponse {
            header: header(),
            deleted: 2,
            prev_kvs: vec![kv("a", "1"), kv("b", "2")],
        };
        assert_eq!(
            out(|w| write_del(w, OutputFormat::Simple, &del)),
            "2\na\n1\nb\n2\n"
        );
        assert!(
            out(|w| write_del(w, OutputFormat::Json, &del))
                .contains(r#""deleted":2,"prev_kvs":[{"key":"YQ==""#)
        );
    }

    #[test]
    fn txn_simple_matches_etcdctl() {
        let resp = TxnResponse {
            header: header(),
            succeeded: true,
            responses: vec![
                ResponseOp {
                    response: Some(Response::ResponsePut(PutResponse {
                        header: None,
                        prev_kv: None,
                    })),
                },
                ResponseOp {
                    response: Some(Response::ResponseRange(RangeResponse {
                        header: None,
                        kvs: vec![kv("key1", "overwrote-key1")],
                        more: false,
                        count: 1,
                    })),
                },
                ResponseOp {
                    response: Some(Response::ResponseDeleteRange(DeleteRangeResponse {
                        header: None,
                        deleted: 1,
                        prev_kvs: vec![],
                    })),
                },
            ],
        };
        assert_eq!(
            out(|w| write_txn(w, OutputFormat::Simple, &resp)),
            "SUCCESS\n\nOK\n\nkey1\noverwrote-key1\n\n1\n"
        );
        let failed = TxnResponse {
            header: header(),
            succeeded: false,
            responses: vec![],
        };
        assert_eq!(
            out(|w| write_txn(w, OutputFormat::Simple, &failed)),
            "FAILURE\n"
        );
        assert_eq!(
            out(|w| write_txn(w, OutputFormat::Json, &resp))
                .lines()
                .next()
                .unwrap(),
            concat!(
                r#"{"header":{"cluster_id":14841639068965178418,"member_id":10276657743932975437,"revision":5,"raft_term":2},"#,
                r#""succeeded":true,"responses":[{"Response":{"ResponsePut":{}}},"#,
                r#"{"Response":{"ResponseRange":{"kvs":[{"key":"a2V5MQ==","create_revision":2,"mod_revision":3,"version":2,"value":"b3Zlcndyb3RlLWtleTE="}],"count":1}}},"#,
                r#"{"Response":{"ResponseDeleteRange":{"deleted":1}}}]}"#
            )
        );
    }

    fn members() -> MemberListResponse {
        MemberListResponse {
            header: header(),
            members: vec![
                Member {
                    id: 0x8e9e05c52164694d,
                    name: "s1".into(),
                    peer_ur_ls: vec!["http://127.0.0.1:2380".into()],
                    client_ur_ls: vec!["http://127.0.0.1:2379".into()],
                    is_learner: false,
                },
                Member {
                    id: 0x91bc3c398fb3c146,
                    name: String::new(),
                    peer_ur_ls: vec!["http://127.0.0.1:22380".into()],
                    client_ur_ls: vec![],
                    is_learner: true,
                },
            ],
        }
    }

    #[test]
    fn member_list_formats() {
        assert_eq!(
            out(|w| write_member_list(w, OutputFormat::Simple, &members())),
            "8e9e05c52164694d, started, s1, http://127.0.0.1:2380, http://127.0.0.1:2379, false\n\
             91bc3c398fb3c146, unstarted, , http://127.0.0.1:22380, , true\n"
        );
        let table = out(|w| write_member_list(w, OutputFormat::Table, &members()));
        let header = table.lines().nth(1).unwrap();
        let cols: Vec<&str> = header
            .split('|')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect();
        assert_eq!(
            cols,
            [
                "ID",
                "STATUS",
                "NAME",
                "PEER ADDRS",
                "CLIENT ADDRS",
                "IS LEARNER"
            ]
        );
        assert!(table.contains("| 8e9e05c52164694d |   started "), "{table}");
        let json = out(|w| write_member_list(w, OutputFormat::Json, &members()));
        assert!(json.contains(r#""members":[{"ID":10276657743932975437,"name":"s1","peerURLs":["http://127.0.0.1:2380"],"clientURLs":["http://127.0.0.1:2379"]},{"ID":10501334649042878790,"peerURLs":["http://127.0.0.1:22380"],"isLearner":true}]"#), "{json}");
    }

    fn statuses() -> Vec<EndpointStatus> {
        vec![EndpointStatus {
            endpoint: "127.0.0.1:2379".into(),
            status: StatusResponse {
                header: header(),
                version: "3.4.23".into(),
                db_size: 20480,
                leader: 10276657743932975437,
                raft_index: 8,
                raft_term: 2,
                raft_applied_index: 8,
                errors: vec![],
                db_size_in_use: 16384,
                is_learner: false,
                ..Default::default()
            },
        }]
    }

    #[test]
    fn endpoint_status_formats() {
        assert_eq!(
            out(|w| write_endpoint_status(w, OutputFormat::Simple, &statuses())),
            "127.0.0.1:2379, 8e9e05c52164694d, 3.4.23, 20 kB, true, false, 2, 8, 8, \n"
        );
        let table = out(|w| write_endpoint_status(w, OutputFormat::Table, &statuses()));
        let header = table.lines().nth(1).unwrap();
        let cols: Vec<&str> = header
            .split('|')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect();
        assert_eq!(
            cols,
            [
                "ENDPOINT",
                "ID",
                "VERSION",
                "DB SIZE",
                "IS LEADER",
                "IS LEARNER",
                "RAFT TERM",
                "RAFT INDEX",
                "RAFT APPLIED INDEX",
                "ERRORS"
            ]
        );
        assert!(table.contains("|   20 kB |"), "{table}");
        let json = out(|w| write_endpoint_status(w, OutputFormat::Json, &statuses()));
        assert_eq!(
            json,
            concat!(
                r#"[{"Endpoint":"127.0.0.1:2379","Status":{"header":{"cluster_id":14841639068965178418,"member_id":10276657743932975437,"revision":5,"raft_term":2},"#,
                r#""version":"3.4.23","dbSize":20480,"leader":10276657743932975437,"raftIndex":8,"raftTerm":2,"raftAppliedIndex":8,"dbSizeInUse":16384}}]"#,
                "\n"
            )
        );
    }

    #[test]
    fn health_lines() {
        let ok = EndpointHealth {
            endpoint: "127.0.0.1:2379".into(),
            healthy: true,
            took: "1.2ms".into(),
            error: None,
        };
        assert_eq!(
            health_line(&ok),
            "127.0.0.1:2379 is healthy: successfully committed proposal: took = 1.2ms"
        );
        let bad = EndpointHealth {
            endpoint: "127.0.0.1:22379".into(),
            healthy: false,
            took: "2s".into(),
            error: Some("etcdserver: no leader".into()),
        };
        assert_eq!(
            health_line(&bad),
            "127.0.0.1:22379 is unhealthy: failed to commit proposal: etcdserver: no leader"
        );
        assert_eq!(
            out(|w| write_endpoint_health(w, OutputFormat::Json, &[ok])),
            "[{\"endpoint\":\"127.0.0.1:2379\",\"health\":true,\"took\":\"1.2ms\"}]\n"
        );
    }

    #[test]
    fn endpoint_hash_kv_formats() {
        let list = [EndpointHashKv {
            endpoint: "127.0.0.1:2379".into(),
            resp: HashKvResponse {
                header: header(),
                hash: 3_456_789_012,
                compact_revision: 3,
                hash_revision: 5,
            },
        }];
        assert_eq!(
            out(|w| write_endpoint_hash_kv(w, OutputFormat::Simple, &list)),
            "127.0.0.1:2379, 3456789012\n"
        );
        let table = out(|w| write_endpoint_hash_kv(w, OutputFormat::Table, &list));
        assert_eq!(
            table.lines().collect::<Vec<_>>(),
            [
                "+----------------+------------+",
                "|    ENDPOINT    |    HASH    |",
                "+----------------+------------+",
                "| 127.0.0.1:2379 | 3456789012 |",
                "+----------------+------------+",
            ]
        );
        assert_eq!(
            out(|w| write_endpoint_hash_kv(w, OutputFormat::Json, &list)),
            concat!(
                r#"[{"Endpoint":"127.0.0.1:2379","HashKV":{"header":{"cluster_id":14841639068965178418,"member_id":10276657743932975437,"revision":5,"raft_term":2},"#,
                r#""hash":3456789012,"compact_revision":3,"hash_revision":5}}]"#,
                "\n"
            )
        );
    }

    #[test]
    fn alarms_print_like_etcdctl() {
        let resp = AlarmResponse {
            header: header(),
            alarms: vec![AlarmMember {
                member_id: 10276657743932975437,
                alarm: AlarmType::Nospace as i32,
            }],
        };
        assert_eq!(
            out(|w| write_alarms(w, OutputFormat::Simple, &resp)),
            "memberID:10276657743932975437 alarm:NOSPACE \n"
        );
        let table = out(|w| write_alarms(w, OutputFormat::Table, &resp));
        assert!(table.contains("| 8e9e05c52164694d | NOSPACE |"), "{table}");
        let json = out(|w| write_alarms(w, OutputFormat::Json, &resp));
        assert!(
            json.ends_with(concat!(
                r#""alarms":[{"memberID":10276657743932975437,"alarm":1}]}"#,
                "\n"
            )),
            "{json}"
        );
        let none = AlarmResponse::default();
        assert_eq!(out(|w| write_alarms(w, OutputFormat::Simple, &none)), "");
        assert_eq!(out(|w| write_alarms(w, OutputFormat::Json, &none)), "{}\n");
        assert_eq!(alarm_name(9), "9");
    }

    #[test]
    fn json_strings_are_escaped_like_go() {
        assert_eq!(
            Json::Str("a\"b\\<c>&\n".into()).render(),
            r#""a\"b\\\u003cc\u003e\u0026\n""#
        );
    }

    #[test]
    fn db_status_in_every_format() {
        let s = DbStatus {
            hash: 0x1f2e_3d4c,
            revision: 13,
            total_keys: 15,
            total_size: 24576,
        };
        assert_eq!(
            out(|w| write_db_status(w, OutputFormat::Simple, &s)),
            "1f2e3d4c, 13, 15, 25 kB\n"
        );
        assert_eq!(
            out(|w| write_db_status(w, OutputFormat::Json, &s)),
            "{\"hash\":523124044,\"revision\":13,\"totalKey\":15,\"totalSize\":24576}\n"
        );
        assert_eq!(
            out(|w| write_db_status(w, OutputFormat::Table, &s)),
            concat!(
                "+----------+----------+------------+------------+\n",
                "|   HASH   | REVISION | TOTAL KEYS | TOTAL SIZE |\n",
                "+----------+----------+------------+------------+\n",
                "| 1f2e3d4c |       13 |         15 |      25 kB |\n",
                "+----------+----------+------------+------------+\n",
            )
        );
    }
}
