//! `skiff logs POD [-c CONTAINER] [-f] [--tail N] [--previous]`: a
//! container's output, as kubectl prints it. The API server proxies the
//! request to the agent of the pod's node; with `-f` the output is
//! written as it comes until the container exits or the command is
//! interrupted.

use std::io::Write;

use clap::Args;

use super::client::{encode, query};
use super::{CliError, ServerArgs, io_error};

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The pod (`NAME` or `pod/NAME`).
    #[arg(value_name = "POD")]
    pub pod: String,
    /// The container (needed when the pod has several).
    #[arg(short = 'c', long, value_name = "CONTAINER")]
    pub container: Option<String>,
    /// Keep writing the output as it comes.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Only the last N lines (-1: all).
    #[arg(long, value_name = "N", default_value_t = -1, allow_negative_numbers = true)]
    pub tail: i64,
    /// The output of the previous run of the container.
    #[arg(short = 'p', long)]
    pub previous: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// The path of a log request.
pub fn log_path(ns: &str, args: &LogsArgs) -> String {
    let name = args
        .pod
        .strip_prefix("pod/")
        .or_else(|| args.pod.strip_prefix("pods/"))
        .unwrap_or(&args.pod);
    let tail = args.tail.to_string();
    let mut params: Vec<(&str, &str)> = Vec::new();
    if let Some(c) = &args.container {
        params.push(("container", c));
    }
    if args.follow {
        params.push(("follow", "true"));
    }
    if args.tail >= 0 {
        params.push(("tailLines", &tail));
    }
    if args.previous {
        params.push(("previous", "true"));
    }
    format!(
        "/api/v1/namespaces/{}/pods/{}/log{}",
        encode(ns),
        encode(name),
        query(&params)
    )
}

pub async fn logs(args: LogsArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let client = args.server.client()?;
    let path = log_path(args.server.namespace(), &args);
    let mut resp = client.stream(&path).await?;
    loop {
        match resp.chunk().await {
            Ok(Some(bytes)) => {
                out.write_all(&bytes).map_err(io_error)?;
                out.flush().map_err(io_error)?;
            }
            Ok(None) => return Ok(()),
            Err(e) => {
                return Err(CliError::Local(format!(
                    "reading the log from {}: {e}",
                    client.base()
                )));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: LogsArgs,
    }

    fn path(argv: &[&str]) -> String {
        let cli = Cli::parse_from(std::iter::once("logs").chain(argv.iter().copied()));
        log_path(cli.args.server.namespace(), &cli.args)
    }

    #[test]
    fn log_paths() {
        assert_eq!(path(&["web"]), "/api/v1/namespaces/default/pods/web/log");
        assert_eq!(
            path(&[
                "pod/web",
                "-c",
                "app",
                "-f",
                "--tail",
                "5",
                "--previous",
                "-n",
                "ops"
            ]),
            "/api/v1/namespaces/ops/pods/web/log?container=app&follow=true&tailLines=5&previous=true"
        );
    }
}
