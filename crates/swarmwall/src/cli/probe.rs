//! `swarmwall probe`: active self-test of a SOCKS5 node (see `swarmwall_probe::probe`).
//!
//! Exit status: 0 when every BitTorrent form was blocked and every control passed; 1 when a
//! form leaked or a control broke; 2 when the proxy could not be used at all.

use std::fmt;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::str::FromStr;
use std::time::Duration;

use swarmwall_core::socks5::ClientError;
use swarmwall_probe::probe::{self, Credentials, ProbeConfig, ProbeError, ProbeReport};

/// Arguments of `swarmwall probe`.
#[derive(Debug, clap::Args)]
pub(crate) struct ProbeArgs {
    /// The SOCKS5 proxy to test, HOST:PORT.
    #[arg(long, value_name = "HOST:PORT")]
    proxy: String,
    /// RFC 1929 username.
    #[arg(long, value_name = "USER", requires = "pass")]
    user: Option<String>,
    /// RFC 1929 password (or the SWARMWALL_PROBE_PASS environment variable).
    #[arg(
        long,
        value_name = "PASS",
        env = "SWARMWALL_PROBE_PASS",
        hide_env_values = true
    )]
    pass: Option<Secret>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Where the probe's own targets listen. The proxy must be allowed to reach this address
    /// (swarmwall denies loopback destinations unless allowed, e.g. `--allow-destination`).
    /// Port 0: one ephemeral port per form; port P: P, P+1, ... one per form.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    target_bind: SocketAddr,
    /// Bound on each step (connect, each flight, each reply), e.g. `3s`, `500ms`.
    #[arg(long, value_name = "DURATION", default_value = "3s", value_parser = parse_duration)]
    timeout: Duration,
}

/// A password that `Debug` does not show.
#[derive(Clone)]
pub(crate) struct Secret(String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

/// Parse `3s`, `500ms`, `2m`, `1h` or a bare number of seconds.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("invalid duration {text:?} (examples: 3s, 500ms, 15m)"))?;
    let seconds = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => return Err(format!("unknown duration unit {other:?} (use ms, s, m, h)")),
    };
    if !(seconds.is_finite() && seconds > 0.0 && seconds < 1.0e9) {
        return Err(format!("duration {text:?} is out of range"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Run `swarmwall probe`.
pub(crate) fn run(args: ProbeArgs) -> anyhow::Result<ExitCode> {
    let credentials = match (args.user, args.pass) {
        (Some(username), Some(Secret(password))) => Some(Credentials { username, password }),
        (None, Some(_)) => anyhow::bail!("--pass needs --user"),
        _ => None,
    };
    let config = ProbeConfig {
        proxy: args.proxy,
        credentials,
        target_bind: args.target_bind,
        timeout: args.timeout,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    match runtime.block_on(probe::run(&config)) {
        Ok(report) => {
            if args.json {
                out(&format!("{}\n", report_json(&report)));
            } else {
                out(&table(&report));
            }
            Ok(if report.enforced() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Err(error) => {
            if args.json {
                let json = serde_json::json!({
                    "proxy": config.proxy,
                    "error": error.to_string(),
                    "reason": error_reason(&error),
                });
                out(&format!("{json}\n"));
            }
            eprintln!("swarmwall probe: {error}");
            Ok(ExitCode::from(2))
        }
    }
}

/// A stable machine-readable reason for exit status 2.
fn error_reason(error: &ProbeError) -> &'static str {
    use swarmwall_probe::probe::SocksError as S;
    match error {
        ProbeError::Resolve(_) => "resolve_failed",
        ProbeError::Proxy { source, .. } => match source {
            S::Connect(_) => "connection_refused",
            S::Timeout(_) => "timeout",
            S::Closed(_) => "closed",
            S::Handshake(refusal) => match refusal {
                ClientError::NotSocks5(_) => "not_socks5",
                ClientError::NoAcceptableMethod(_) | ClientError::UnexpectedMethod(_) => {
                    "no_acceptable_method"
                }
                ClientError::CredentialsRequired => "credentials_required",
                ClientError::AuthFailed(_) | ClientError::BadCredentials => "auth_failed",
                _ => "proxy_error",
            },
            _ => "proxy_error",
        },
        ProbeError::TargetAddress(_) | ProbeError::TargetBind { .. } => "target_bind",
        _ => "error",
    }
}

fn report_json(report: &ProbeReport) -> serde_json::Value {
    serde_json::json!({
        "proxy": report.proxy.to_string(),
        "enforced": report.enforced(),
        "summary": report.summary(),
        "results": report.results,
    })
}

/// Write to stdout; a closed pipe (`| head`) is not an error worth a panic.
pub(crate) fn out(text: &str) {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}

fn table(report: &ProbeReport) -> String {
    use std::fmt::Write as _;
    let mut text = String::new();
    let _ = writeln!(text, "probe of SOCKS5 proxy {}", report.proxy);
    let _ = writeln!(
        text,
        "{:<22} {:<10} {:<8} {:>8}  DETAIL",
        "FORM", "KIND", "OUTCOME", "ELAPSED"
    );
    for result in &report.results {
        let mark = if result.as_expected() { " " } else { "!" };
        let _ = writeln!(
            text,
            "{:<22} {:<10} {:<8} {:>6}ms {mark}{}",
            result.form,
            result.kind.as_str(),
            result.outcome.as_str(),
            result.elapsed_ms,
            result.detail
        );
    }
    let _ = writeln!(text, "result: {}", report.summary());
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("3s"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert!(parse_duration("x").is_err());
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("3 parsecs").is_err());
    }

    #[test]
    fn secret_debug_is_redacted() {
        assert_eq!(format!("{:?}", Secret("hunter2".into())), "<redacted>");
    }
}
