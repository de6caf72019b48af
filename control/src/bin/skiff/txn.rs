//! etcdctl's txn input grammar, parsed without IO beyond reading lines.
//!
//! ```text
//! mod("key1") > "0"            <- compares, ANDed, one per line
//! value("key2") = "v"
//!                              <- blank line
//! put key1 "overwrote-key1"    <- success requests
//! get key2 --prefix
//!                              <- blank line
//! put key1 "created-key1"      <- failure requests
//! ```
//!
//! Compares are `TARGET("KEY") OP "VALUE"`: targets `version`/`ver`,
//! `create`/`c`, `mod`/`m`, `value`/`val`, `lease` (value in hex); operators
//! `=`, `!=`, `<`, `>`. Strings are Go-quoted (`"a\tb"`, `"\x00"`,
//! `` `raw` ``). Requests are the `put`, `get` and `del` commands with their
//! flags; their arguments may be bare words, `"double-quoted"` with Go
//! escapes, or `'single-quoted'`.
//!
//! Unlike etcdctl, the end of the input also ends a section, so the last
//! blank line (and missing sections) may be left out.

use std::ffi::OsString;
use std::io::BufRead;
use std::os::unix::ffi::OsStringExt;

use clap::Parser;
use skiff_proto::etcdserverpb::{
    Compare, RequestOp, TxnRequest,
    compare::{CompareResult, CompareTarget, TargetUnion},
    request_op::Request,
};

use crate::kv::{self, DelArgs, GetArgs, PutArgs};

/// The three parts of the input, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Section {
    Compares,
    Success,
    Failure,
}

impl Section {
    /// etcdctl's interactive prompt for the section.
    pub fn prompt(self) -> &'static str {
        match self {
            Section::Compares => "compares:",
            Section::Success => "success requests (get, put, del):",
            Section::Failure => "failure requests (get, put, del):",
        }
    }
}

/// Why the input is not a transaction, naming the line.
#[derive(Debug, thiserror::Error)]
pub enum TxnError {
    #[error("invalid txn input on line {line} ({text:?}): {reason}")]
    Line {
        line: usize,
        text: String,
        reason: String,
    },
    #[error("cannot read txn input at line {line}: {error}")]
    Read { line: usize, error: std::io::Error },
}

const COMPARE_USAGE: &str = r#"expected TARGET("KEY") OP "VALUE", e.g. mod("key1") > "0""#;
const REQUEST_USAGE: &str = "expected put KEY VALUE, get KEY [END] or del KEY [END]";

/// Reads a whole transaction. `prompt` is called as each section starts.
pub fn parse_txn<R: BufRead>(
    mut input: R,
    mut prompt: impl FnMut(Section),
) -> Result<TxnRequest, TxnError> {
    let mut txn = TxnRequest::default();
    let mut line_no = 0;
    let mut at_eof = false;
    for section in [Section::Compares, Section::Success, Section::Failure] {
        if at_eof {
            break;
        }
        prompt(section);
        loop {
            let mut raw = Vec::new();
            line_no += 1;
            let n = input
                .read_until(b'\n', &mut raw)
                .map_err(|error| TxnError::Read {
                    line: line_no,
                    error,
                })?;
            if n == 0 {
                at_eof = true;
                break;
            }
            let line_err = |text: &str, reason: String| TxnError::Line {
                line: line_no,
                text: text.to_string(),
                reason,
            };
            let text = String::from_utf8(raw).map_err(|e| {
                line_err(
                    &String::from_utf8_lossy(e.as_bytes()),
                    "not valid UTF-8 (write other bytes as \\xNN in quotes)".into(),
                )
            })?;
            let text = text.trim();
            if text.is_empty() {
                break;
            }
            match section {
                Section::Compares => txn
                    .compare
                    .push(parse_compare(text).map_err(|r| line_err(text, r))?),
                Section::Success => txn
                    .success
                    .push(parse_request(text).map_err(|r| line_err(text, r))?),
                Section::Failure => txn
                    .failure
                    .push(parse_request(text).map_err(|r| line_err(text, r))?),
            }
        }
    }
    Ok(txn)
}

/// One compare line, e.g. `mod("key1") > "0"`.
pub fn parse_compare(line: &str) -> Result<Compare, String> {
    let Some((target, rest)) = line.split_once('(') else {
        return Err(format!("malformed comparison: {COMPARE_USAGE}"));
    };
    let target = match target.trim() {
        "ver" | "version" => CompareTarget::Version,
        "c" | "create" => CompareTarget::Create,
        "m" | "mod" => CompareTarget::Mod,
        "val" | "value" => CompareTarget::Value,
        "lease" => CompareTarget::Lease,
        "" => return Err(format!("missing compare target; {COMPARE_USAGE}")),
        other => {
            return Err(format!(
                "unknown compare target {other:?}; expected version, create, mod, value or lease"
            ));
        }
    };
    let (key, rest) =
        unquote(rest.trim_start()).map_err(|e| format!("bad key: {e}; {COMPARE_USAGE}"))?;
    let Some(rest) = rest.trim_start().strip_prefix(')') else {
        return Err(format!("expected ')' after the key; {COMPARE_USAGE}"));
    };
    let rest = rest.trim_start();
    let op_len = rest
        .find(|c: char| !matches!(c, '=' | '!' | '<' | '>'))
        .unwrap_or(rest.len());
    let (op, rest) = rest.split_at(op_len);
    let result = match op {
        "=" => CompareResult::Equal,
        "!=" => CompareResult::NotEqual,
        "<" => CompareResult::Less,
        ">" => CompareResult::Greater,
        "" => return Err("missing operator; expected =, !=, < or >".to_string()),
        other => {
            return Err(format!(
                "unknown operator {other:?}; expected =, !=, < or >"
            ));
        }
    };
    let (value, rest) =
        unquote(rest.trim_start()).map_err(|e| format!("bad value: {e}; {COMPARE_USAGE}"))?;
    if !rest.trim().is_empty() {
        return Err(format!("unexpected {:?} after the value", rest.trim()));
    }
    let number = |what: &str| -> Result<i64, String> {
        let text = String::from_utf8_lossy(&value);
        text.parse::<i64>()
            .map_err(|e| format!("invalid {what} {text:?}: {e}"))
    };
    let target_union = match target {
        CompareTarget::Version => TargetUnion::Version(number("version")?),
        CompareTarget::Create => TargetUnion::CreateRevision(number("create revision")?),
        CompareTarget::Mod => TargetUnion::ModRevision(number("mod revision")?),
        CompareTarget::Value => TargetUnion::Value(value),
        CompareTarget::Lease => TargetUnion::Lease(
            kv::parse_lease(&String::from_utf8_lossy(&value)).map_err(|e| e.to_string())?,
        ),
    };
    Ok(Compare {
        result: result as i32,
        target: target as i32,
        key,
        range_end: Vec::new(),
        target_union: Some(target_union),
    })
}

/// The request commands allowed in a txn, with the same flags as
/// `skiff kv put|get|del`.
#[derive(Debug, Parser)]
#[command(
    no_binary_name = true,
    disable_help_subcommand = true,
    disable_help_flag = true,
    disable_version_flag = true
)]
enum TxnOp {
    Put(PutArgs),
    Get(GetArgs),
    Del(DelArgs),
}

/// One request line, e.g. `put key1 "overwrote-key1"`.
pub fn parse_request(line: &str) -> Result<RequestOp, String> {
    let args = argify(line)?;
    match args.first().map(Vec::as_slice) {
        Some(b"put" | b"get" | b"del") => {}
        Some(other) => {
            return Err(format!(
                "unknown request {:?}; {REQUEST_USAGE}",
                String::from_utf8_lossy(other)
            ));
        }
        None => return Err(REQUEST_USAGE.to_string()),
    }
    if args.len() < 2 {
        return Err(format!("missing key; {REQUEST_USAGE}"));
    }
    let args: Vec<OsString> = args.into_iter().map(OsString::from_vec).collect();
    let op = TxnOp::try_parse_from(args).map_err(|e| clap_reason(&e))?;
    let request = match op {
        TxnOp::Put(a) => Request::RequestPut(kv::put_request(&a).map_err(|e| e.to_string())?),
        TxnOp::Get(a) => Request::RequestRange(kv::range_request(&a).map_err(|e| e.to_string())?),
        TxnOp::Del(a) => Request::RequestDeleteRange(kv::delete_request(&a)),
    };
    Ok(RequestOp {
        request: Some(request),
    })
}

/// clap's error as one line: its text up to the usage, without "error: ".
fn clap_reason(e: &clap::Error) -> String {
    let text = e.to_string();
    let lines: Vec<&str> = text
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect();
    let joined = lines.join(" ");
    joined
        .strip_prefix("error: ")
        .unwrap_or(&joined)
        .to_string()
}

/// Splits a request line into arguments: bare words, `"Go-quoted"` strings,
/// `'single-quoted'` strings (etcdctl's `Argify`).
pub fn argify(line: &str) -> Result<Vec<Vec<u8>>, String> {
    let mut args = Vec::new();
    let mut rest = line.trim_start();
    while !rest.is_empty() {
        if rest.starts_with('"') {
            let (arg, after) = unquote(rest)?;
            args.push(arg);
            rest = after;
        } else if let Some(inner) = rest.strip_prefix('\'') {
            let end = inner
                .find('\'')
                .ok_or_else(|| "unterminated single-quoted string".to_string())?;
            args.push(inner.as_bytes()[..end].to_vec());
            rest = &inner[end + 1..];
        } else {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            args.push(rest.as_bytes()[..end].to_vec());
            rest = &rest[end..];
        }
        rest = rest.trim_start();
    }
    Ok(args)
}

/// Reads one Go string literal at the start of `s`: `"..."` with Go's
/// escapes or a `` `raw` `` string. Returns its bytes and the rest of `s`.
pub fn unquote(s: &str) -> Result<(Vec<u8>, &str), String> {
    if let Some(inner) = s.strip_prefix('`') {
        let end = inner
            .find('`')
            .ok_or_else(|| "unterminated `raw` string".to_string())?;
        return Ok((inner.as_bytes()[..end].to_vec(), &inner[end + 1..]));
    }
    let Some(inner) = s.strip_prefix('"') else {
        return Err("expected a \"quoted\" string".to_string());
    };
    let mut out = Vec::new();
    let mut chars = inner.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, &inner[i + 1..])),
            '\\' => {
                let (_, e) = chars
                    .next()
                    .ok_or_else(|| "unterminated quoted string".to_string())?;
                match e {
                    'a' => out.push(0x07),
                    'b' => out.push(0x08),
                    'f' => out.push(0x0c),
                    'n' => out.push(b'\n'),
                    'r' => out.push(b'\r'),
                    't' => out.push(b'\t'),
                    'v' => out.push(0x0b),
                    '\\' | '"' | '\'' => out.push(e as u8),
                    'x' => {
                        let hex = take(&mut chars, 2)?;
                        let byte = u8::from_str_radix(&hex, 16)
                            .map_err(|_| format!("invalid escape \\x{hex}"))?;
                        out.push(byte);
                    }
                    '0'..='7' => {
                        let digits = format!("{e}{}", take(&mut chars, 2)?);
                        let byte = u8::from_str_radix(&digits, 8)
                            .map_err(|_| format!("invalid escape \\{digits}"))?;
                        out.push(byte);
                    }
                    'u' | 'U' => {
                        let hex = take(&mut chars, if e == 'u' { 4 } else { 8 })?;
                        let ch = u32::from_str_radix(&hex, 16)
                            .ok()
                            .and_then(char::from_u32)
                            .ok_or_else(|| format!("invalid escape \\{e}{hex}"))?;
                        let mut buf = [0; 4];
                        out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                    }
                    other => return Err(format!("unknown escape \\{other}")),
                }
            }
            c => {
                let mut buf = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    Err("unterminated quoted string".to_string())
}

/// The next `n` characters of an escape.
fn take(chars: &mut std::str::CharIndices<'_>, n: usize) -> Result<String, String> {
    let s: String = chars.by_ref().take(n).map(|(_, c)| c).collect();
    if s.chars().count() == n {
        Ok(s)
    } else {
        Err("unterminated escape".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_proto::etcdserverpb::{DeleteRangeRequest, PutRequest, RangeRequest};

    fn cmp(line: &str) -> Compare {
        parse_compare(line).unwrap_or_else(|e| panic!("{line}: {e}"))
    }

    fn cmp_err(line: &str) -> String {
        parse_compare(line).expect_err(line)
    }

    fn req(line: &str) -> Request {
        parse_request(line)
            .unwrap_or_else(|e| panic!("{line}: {e}"))
            .request
            .unwrap()
    }

    fn req_err(line: &str) -> String {
        parse_request(line).expect_err(line)
    }

    fn put(k: &str, v: &str) -> Request {
        Request::RequestPut(PutRequest {
            key: k.into(),
            value: v.into(),
            ..Default::default()
        })
    }

    #[test]
    fn compares_every_target() {
        let c = cmp(r#"mod("key1") > "0""#);
        assert_eq!(c.target, CompareTarget::Mod as i32);
        assert_eq!(c.result, CompareResult::Greater as i32);
        assert_eq!(c.key, b"key1");
        assert_eq!(c.target_union, Some(TargetUnion::ModRevision(0)));

        let c = cmp(r#"value("k") = "v""#);
        assert_eq!(
            (c.target, c.result),
            (CompareTarget::Value as i32, CompareResult::Equal as i32)
        );
        assert_eq!(c.target_union, Some(TargetUnion::Value(b"v".to_vec())));

        let c = cmp(r#"version("k") != "3""#);
        assert_eq!(c.result, CompareResult::NotEqual as i32);
        assert_eq!(c.target_union, Some(TargetUnion::Version(3)));

        let c = cmp(r#"create("k") < "5""#);
        assert_eq!(c.result, CompareResult::Less as i32);
        assert_eq!(c.target_union, Some(TargetUnion::CreateRevision(5)));

        let c = cmp(r#"lease("k") = "694d71ddacfda227""#);
        assert_eq!(c.target_union, Some(TargetUnion::Lease(0x694d71ddacfda227)));
    }

    #[test]
    fn compares_short_targets_and_spacing() {
        assert_eq!(cmp(r#"m("a") > "1""#).target, CompareTarget::Mod as i32);
        assert_eq!(cmp(r#"c("a") = "0""#).target, CompareTarget::Create as i32);
        assert_eq!(
            cmp(r#"ver("a") = "1""#).target,
            CompareTarget::Version as i32
        );
        assert_eq!(cmp(r#"val("a") = "x""#).target, CompareTarget::Value as i32);
        // More and less space than etcdctl insists on.
        assert_eq!(cmp(r#"mod( "a" )>"1""#), cmp(r#"mod("a") > "1""#));
        assert_eq!(cmp(r#"  mod("a")   >   "1"  "#), cmp(r#"mod("a") > "1""#));
    }

    #[test]
    fn compares_quoting() {
        let c = cmp(r#"value("a b\"c") = "tab\there\x00\u00e9""#);
        assert_eq!(c.key, b"a b\"c");
        assert_eq!(
            c.target_union,
            Some(TargetUnion::Value(b"tab\there\x00\xc3\xa9".to_vec()))
        );
        let c = cmp(r#"value(`raw\n`) = `)"`"#);
        assert_eq!(c.key, br"raw\n");
        assert_eq!(c.target_union, Some(TargetUnion::Value(b")\"".to_vec())));
        let c = cmp(r#"value("key(1)") = "\101\102""#);
        assert_eq!(c.key, b"key(1)");
        assert_eq!(c.target_union, Some(TargetUnion::Value(b"AB".to_vec())));
        // A negative number parses, as Go's ParseInt does.
        assert_eq!(
            cmp(r#"mod("a") > "-1""#).target_union,
            Some(TargetUnion::ModRevision(-1))
        );
    }

    #[test]
    fn compare_errors_say_what_is_wrong() {
        assert!(cmp_err(r#"foo("a") = "b""#).contains(r#"unknown compare target "foo""#));
        assert!(cmp_err(r#"("a") = "b""#).contains("missing compare target"));
        assert!(cmp_err("mod").contains("malformed comparison"));
        assert!(cmp_err(r#"mod(a) > "1""#).contains("bad key"));
        assert!(cmp_err(r#"mod("a" > "1""#).contains("expected ')'"));
        assert!(cmp_err(r#"mod("a) > "1""#).contains("expected ')'"));
        assert!(cmp_err(r#"mod("a") >= "1""#).contains(r#"unknown operator ">=""#));
        assert!(cmp_err(r#"mod("a") == "1""#).contains(r#"unknown operator "==""#));
        assert!(cmp_err(r#"mod("a") "1""#).contains("missing operator"));
        assert!(cmp_err(r#"mod("a") > 1"#).contains("bad value"));
        assert!(cmp_err(r#"mod("a") > "x""#).contains(r#"invalid mod revision "x""#));
        assert!(cmp_err(r#"version("a") = "1.5""#).contains("invalid version"));
        assert!(cmp_err(r#"lease("a") = "xyz""#).contains("invalid lease ID"));
        assert!(cmp_err(r#"mod("a") > "1" extra"#).contains(r#"unexpected "extra""#));
        assert!(cmp_err(r#"value("a") = "unterminated"#).contains("unterminated"));
        assert!(cmp_err(r#"value("a\q") = "b""#).contains(r"unknown escape \q"));
        assert!(cmp_err(r#"value("a\x4") = "b""#).contains("escape"));
    }

    #[test]
    fn requests() {
        assert_eq!(
            req("put key1 overwrote-key1"),
            put("key1", "overwrote-key1")
        );
        assert_eq!(
            req(r#"put key1 "overwrote key1""#),
            put("key1", "overwrote key1")
        );
        assert_eq!(req("put 'a b' 'c\\d'"), put("a b", "c\\d"));
        assert_eq!(req(r#"put "k\n" "\x00""#), put("k\n", "\0"));
        assert_eq!(req("put k -- -v"), put("k", "-v"));
        assert_eq!(
            req("get key2 key9 --limit 3 --rev=4"),
            Request::RequestRange(RangeRequest {
                key: b"key2".to_vec(),
                range_end: b"key9".to_vec(),
                limit: 3,
                revision: 4,
                ..Default::default()
            })
        );
        match req("get foo --prefix --keys-only") {
            Request::RequestRange(r) => {
                assert_eq!(r.range_end, b"fop");
                assert!(r.keys_only);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            req("del k --prefix --prev-kv"),
            Request::RequestDeleteRange(DeleteRangeRequest {
                key: b"k".to_vec(),
                range_end: b"l".to_vec(),
                prev_kv: true,
            })
        );
        match req("put k v --lease=1f --prev-kv") {
            Request::RequestPut(p) => assert_eq!((p.lease, p.prev_kv), (0x1f, true)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn request_errors_say_what_is_wrong() {
        assert!(req_err("putx a b").contains(r#"unknown request "putx""#));
        assert!(req_err("put").contains("missing key"));
        assert!(
            req_err("put a").contains("required"),
            "{}",
            req_err("put a")
        );
        assert!(req_err("put a b c").contains("unexpected argument"));
        assert!(req_err("get a --nope").contains("--nope"));
        assert!(req_err("get a --prefix --from-key").contains("cannot be used with"));
        assert!(req_err("get a --rev abc").contains(r#"invalid revision "abc""#));
        assert!(req_err("put a b --lease zz").contains("invalid lease ID"));
        assert!(req_err(r#"put "a b"#).contains("unterminated"));
        assert!(req_err("put 'a b").contains("unterminated"));
        assert!(!req_err("put a").contains('\n'));
    }

    #[test]
    fn argify_splits_like_etcdctl() {
        let args = argify(r#"put  "a b"  'c d' e"f g"#).unwrap();
        let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        assert_eq!(
            args,
            vec![
                &b"put"[..],
                &b"a b"[..],
                &b"c d"[..],
                &b"e\"f"[..],
                &b"g"[..]
            ]
        );
        assert_eq!(argify("").unwrap(), Vec::<Vec<u8>>::new());
        let args = argify(r#""a"b"#).unwrap();
        assert_eq!(args, vec![b"a".to_vec(), b"b".to_vec()]);
    }

    fn parse(input: &str) -> Result<TxnRequest, TxnError> {
        parse_txn(input.as_bytes(), |_| {})
    }

    #[test]
    fn whole_txn_like_etcdctl_help() {
        let input = "mod(\"key1\") > \"0\"\n\nput key1 \"overwrote-key1\"\n\nput key1 \"created-key1\"\nput key2 \"some extra key\"\n\n";
        let mut prompts = Vec::new();
        let txn = parse_txn(input.as_bytes(), |s| prompts.push(s.prompt())).unwrap();
        assert_eq!(txn.compare.len(), 1);
        assert_eq!(
            txn.success,
            vec![RequestOp {
                request: Some(put("key1", "overwrote-key1"))
            }]
        );
        assert_eq!(
            txn.failure,
            vec![
                RequestOp {
                    request: Some(put("key1", "created-key1"))
                },
                RequestOp {
                    request: Some(put("key2", "some extra key"))
                },
            ]
        );
        assert_eq!(
            prompts,
            [
                "compares:",
                "success requests (get, put, del):",
                "failure requests (get, put, del):"
            ]
        );
    }

    #[test]
    fn sections_may_be_empty_or_cut_short() {
        // No compares: the success branch always runs.
        let txn = parse("\nput a 1\n\n\n").unwrap();
        assert!(txn.compare.is_empty());
        assert_eq!(txn.success.len(), 1);
        assert!(txn.failure.is_empty());
        // End of input ends the last section without a final blank line...
        let txn = parse("value(\"a\") = \"1\"\n\nput a 2\n\nput a 3").unwrap();
        assert_eq!((txn.success.len(), txn.failure.len()), (1, 1));
        // ... and missing sections are empty.
        let txn = parse("value(\"a\") = \"1\"\n").unwrap();
        assert_eq!(
            (txn.compare.len(), txn.success.len(), txn.failure.len()),
            (1, 0, 0)
        );
        assert_eq!(parse("").unwrap(), TxnRequest::default());
        // Windows line ends and indentation are fine.
        let txn = parse("  mod(\"a\") > \"0\"\r\n\r\n  get a\r\n").unwrap();
        assert_eq!((txn.compare.len(), txn.success.len()), (1, 1));
    }

    #[test]
    fn errors_name_the_line() {
        let err = parse("mod(\"a\") > \"0\"\n\nput a 1\nputx a b\n\n").unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with(
                "invalid txn input on line 4 (\"putx a b\"): unknown request \"putx\""
            ),
            "{text}"
        );
        let err = parse("mod(\"a\") >= \"0\"\n").unwrap_err();
        assert!(
            err.to_string().starts_with(
                "invalid txn input on line 1 (\"mod(\\\"a\\\") >= \\\"0\\\"\"): unknown operator"
            ),
            "{err}"
        );
        // A request where a compare belongs, and the reverse.
        let err = parse("put a b\n").unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
        let err = parse("\n\nmod(\"a\") > \"0\"\n").unwrap_err();
        assert!(err.to_string().contains("line 3"), "{err}");
        let err = parse_txn(&b"\n\xff\xfe\n"[..], |_| {}).unwrap_err();
        assert!(err.to_string().contains("line 2") && err.to_string().contains("UTF-8"));
    }
}
