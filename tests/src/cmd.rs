//! Running `etcdctl` and the `skiff` CLI, and reading their output.

use std::fmt;
use std::path::Path;
use std::process::{ExitStatus, Stdio};

use tokio::io::AsyncWriteExt as _;
use tokio::process::Command;

use crate::{COMMAND_TIMEOUT, bins};

/// What a command printed and how it exited.
#[derive(Debug)]
pub struct CmdOutput {
    /// The command line, for messages.
    pub command: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl CmdOutput {
    /// Panics with the whole output unless the command exited with status 0.
    #[track_caller]
    pub fn success(&self) -> &Self {
        assert!(self.status.success(), "expected success:\n{self}");
        self
    }

    /// Panics with the whole output unless the command exited with `code`.
    #[track_caller]
    pub fn code(&self, code: i32) -> &Self {
        assert_eq!(
            self.status.code(),
            Some(code),
            "expected exit status {code}:\n{self}"
        );
        self
    }

    /// The lines of standard output.
    pub fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }

    /// Standard output followed by standard error.
    pub fn combined(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

impl fmt::Display for CmdOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` exited with {}\n--- stdout ---\n{}--- stderr ---\n{}--- end ---",
            self.command, self.status, self.stdout, self.stderr
        )
    }
}

/// Runs `program args` with `env`, feeding `stdin` (or nothing), and waits at
/// most [`COMMAND_TIMEOUT`].
pub async fn run(
    program: &Path,
    args: &[String],
    env: &[(&str, &str)],
    stdin: Option<&str>,
) -> CmdOutput {
    let command = std::iter::once(program.display().to_string())
        .chain(args.iter().map(|a| {
            if a.contains(' ') {
                format!("'{a}'")
            } else {
                a.clone()
            }
        }))
        .collect::<Vec<_>>()
        .join(" ");
    let mut child = Command::new(program)
        .args(args)
        .env_remove("ETCDCTL_ENDPOINTS")
        .env_remove("SKIFF_ENDPOINTS")
        .env_remove("SKIFF_SERVER")
        .envs(env.iter().copied())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("run `{command}`: {e}"));
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin is piped");
        pipe.write_all(input.as_bytes())
            .await
            .unwrap_or_else(|e| panic!("write stdin of `{command}`: {e}"));
        drop(pipe);
    }
    let output = match tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => panic!("wait for `{command}`: {e}"),
        Err(_) => panic!("`{command}` did not finish within {COMMAND_TIMEOUT:?}"),
    };
    CmdOutput {
        command,
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `ETCDCTL_API=3 etcdctl --endpoints=ENDPOINTS ARGS`.
pub async fn etcdctl(endpoints: &str, args: &[&str], stdin: Option<&str>) -> CmdOutput {
    let args: Vec<String> = std::iter::once(format!("--endpoints={endpoints}"))
        .chain(args.iter().map(|a| a.to_string()))
        .collect();
    run(&bins::etcdctl_bin(), &args, &[("ETCDCTL_API", "3")], stdin).await
}

/// `skiff --endpoints=ENDPOINTS ARGS`.
pub async fn skiff(endpoints: &str, args: &[&str], stdin: Option<&str>) -> CmdOutput {
    let args: Vec<String> = std::iter::once(format!("--endpoints={endpoints}"))
        .chain(args.iter().map(|a| a.to_string()))
        .collect();
    run(&bins::skiff_bin(), &args, &[], stdin).await
}

/// A table as `-w table` prints it (etcdctl's tablewriter, or comfy-table's
/// ASCII and UTF-8 presets): the first row of cells is the header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// Parses the rows of cells in `text`; border lines are skipped. Panics if
    /// there is no row or a row has another number of cells than the header.
    #[track_caller]
    pub fn parse(text: &str) -> Table {
        let mut rows = text.lines().filter_map(cells);
        let header = rows
            .next()
            .unwrap_or_else(|| panic!("no table in:\n{text}"));
        let rows: Vec<Vec<String>> = rows.collect();
        for row in &rows {
            assert_eq!(
                row.len(),
                header.len(),
                "row {row:?} does not match header {header:?} in:\n{text}"
            );
        }
        Table { header, rows }
    }

    /// The position of column `name` in the header; panics if it is missing.
    #[track_caller]
    pub fn index(&self, name: &str) -> usize {
        self.header
            .iter()
            .position(|h| h.eq_ignore_ascii_case(name))
            .unwrap_or_else(|| panic!("no column {name:?} in header {:?}", self.header))
    }

    /// The cells of column `name`, one per row.
    #[track_caller]
    pub fn column(&self, name: &str) -> Vec<&str> {
        let index = self.index(name);
        self.rows.iter().map(|row| row[index].as_str()).collect()
    }

    /// The cell of column `name` in row `row`.
    #[track_caller]
    pub fn cell(&self, row: usize, name: &str) -> &str {
        &self.rows[row][self.index(name)]
    }
}

/// The cells of a table line, or `None` for a border or a line outside a table.
fn cells(line: &str) -> Option<Vec<String>> {
    const SEPARATORS: [char; 5] = ['|', '│', '┃', '║', '┆'];
    let line = line.trim();
    if !line.starts_with(SEPARATORS) || !line.ends_with(SEPARATORS) || line.chars().count() < 2 {
        return None;
    }
    let inner =
        &line[line.chars().next()?.len_utf8()..line.len() - line.chars().last()?.len_utf8()];
    Some(
        inner
            .split(SEPARATORS)
            .map(|cell| cell.trim().to_string())
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_etcdctl_and_comfy_tables() {
        let etcdctl = "\
+------------------------+------------------+---------+-----------+
|        ENDPOINT        |        ID        | VERSION | IS LEADER |
+------------------------+------------------+---------+-----------+
| http://127.0.0.1:2379  | 8e9e05c52164694d |  3.4.23 |      true |
| http://127.0.0.1:22379 | 91bc3c398fb3c146 |  3.4.23 |     false |
+------------------------+------------------+---------+-----------+
";
        let table = Table::parse(etcdctl);
        assert_eq!(table.header, ["ENDPOINT", "ID", "VERSION", "IS LEADER"]);
        assert_eq!(table.column("is leader"), ["true", "false"]);
        assert_eq!(table.cell(1, "ID"), "91bc3c398fb3c146");

        let utf8 = "\
┌──────┬───────┐
│ NAME ┆ LEADER│
╞══════╪═══════╡
│ s1   ┆ true  │
├╌╌╌╌╌╌┼╌╌╌╌╌╌╌┤
│ s2   ┆ false │
└──────┴───────┘
";
        let table = Table::parse(utf8);
        assert_eq!(table.header, ["NAME", "LEADER"]);
        assert_eq!(table.column("NAME"), ["s1", "s2"]);
    }
}
