//! `swarmwall monitor`: watch known swarms for the operator's own egress addresses (see
//! `swarmwall_probe::monitor`).
//!
//! Exit status: 0 no leak, 1 leak found, 2 usage or watchlist errors (and no leak).

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use ipnet::IpNet;
use swarmwall_probe::monitor::{
    self, Leak, LeakSource, Monitor, MonitorConfig, MonitorMetrics, WorkReport,
};

use super::probe::{out, parse_duration};

/// Arguments of `swarmwall monitor`.
#[derive(Debug, clap::Args)]
pub(crate) struct MonitorArgs {
    /// Watchlist: one work per line (40-hex or 32-base32 info-hash, magnet link, or path to a
    /// .torrent file); `#` starts a comment line.
    #[arg(long, value_name = "FILE")]
    watchlist: PathBuf,
    /// The operator's own egress ranges (CIDR or bare address), comma-separated or repeated.
    #[arg(long, value_name = "CIDR", value_delimiter = ',', required = true, value_parser = parse_net)]
    egress: Vec<IpNet>,
    /// Extra tracker asked for every work (http:// or udp://), repeatable.
    #[arg(long, value_name = "URL")]
    tracker: Vec<String>,
    /// DHT bootstrap node, repeatable. Without one, the DHT is not searched.
    #[arg(long, value_name = "HOST:PORT")]
    dht_bootstrap: Vec<String>,
    /// Print JSON lines instead of text.
    #[arg(long)]
    json: bool,
    /// Check once and exit (the default).
    #[arg(long, conflicts_with = "interval")]
    once: bool,
    /// Check again after every interval (e.g. `15m`) until interrupted.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    interval: Option<Duration>,
    /// Bound on every network request.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    timeout: Duration,
    /// Peers asked for in each announce.
    #[arg(long, default_value_t = 200)]
    numwant: u32,
    /// Port the monitor announces (it sends `stopped` right after). Our own egress address at
    /// exactly this port is the monitor itself and is not reported.
    #[arg(long, default_value_t = 6881)]
    announce_port: u16,
    /// Most DHT queries per work.
    #[arg(long, default_value_t = 200)]
    dht_max_queries: usize,
    /// DHT queries in flight at once.
    #[arg(long, default_value_t = 3)]
    dht_alpha: usize,
    /// Requests per minute to any one tracker.
    #[arg(long, value_name = "N", default_value = "30")]
    tracker_rate: NonZeroU32,
    /// Queries per minute to any one DHT node.
    #[arg(long, value_name = "N", default_value = "10")]
    dht_rate: NonZeroU32,
    /// Do not confirm leaks with a BitTorrent handshake.
    #[arg(long)]
    no_confirm: bool,
    /// Serve Prometheus `/metrics` (swarmwall_monitor_leaks_total) on this address.
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<SocketAddr>,
}

fn parse_net(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{text:?} is not a CIDR range or an IP address"))
}

/// Run `swarmwall monitor`.
pub(crate) fn run(args: MonitorArgs) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&args.watchlist)
        .with_context(|| format!("cannot read the watchlist {}", args.watchlist.display()))?;
    let base = args
        .watchlist
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default();
    let (works, errors) = monitor::watchlist::parse(&text, &base);
    for error in &errors {
        if args.json {
            out(&format!(
                "{}\n",
                serde_json::json!({
                    "event": "watchlist_error",
                    "line": error.line,
                    "message": error.problem.to_string(),
                })
            ));
        }
        eprintln!("swarmwall monitor: {error}");
    }

    let mut config = MonitorConfig::new(args.egress.clone());
    config.extra_trackers = args.tracker.clone();
    config.dht_bootstrap = args.dht_bootstrap.clone();
    config.timeout = args.timeout;
    config.numwant = args.numwant;
    config.announce_port = args.announce_port;
    config.dht_max_queries = args.dht_max_queries;
    config.dht_alpha = args.dht_alpha;
    config.confirm = !args.no_confirm;
    config.tracker_rate_per_minute = args.tracker_rate;
    config.dht_rate_per_minute = args.dht_rate;
    let metrics = Arc::new(MonitorMetrics::new());
    let monitor = Monitor::new(config, Arc::clone(&metrics))?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let leaks_found = runtime.block_on(async {
        if let Some(address) = args.metrics_listen {
            let listener = tokio::net::TcpListener::bind(address)
                .await
                .with_context(|| format!("cannot listen on {address} for /metrics"))?;
            eprintln!(
                "swarmwall monitor: metrics on http://{}/metrics",
                listener.local_addr()?
            );
            tokio::spawn(monitor::serve_metrics(listener, Arc::clone(&metrics)));
        }
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut leaks_found = 0usize;
        loop {
            for work in &works {
                let report = monitor.check(work).await;
                leaks_found += report.leaks.len();
                print_report(&report, args.json);
            }
            let Some(interval) = args.interval else {
                break;
            };
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = tokio::signal::ctrl_c() => break,
                _ = terminate.recv() => break,
            }
        }
        anyhow::Ok(leaks_found)
    })?;

    Ok(if leaks_found > 0 {
        ExitCode::from(1)
    } else if !errors.is_empty() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

fn print_report(report: &WorkReport, json: bool) {
    let hash = report.work.info_hash_hex();
    for leak in &report.leaks {
        out(&format!("{}\n", leak_line(leak, json)));
    }
    for source in &report.sources {
        if json {
            out(&format!(
                "{}\n",
                serde_json::json!({
                    "event": "checked",
                    "line": report.work.line,
                    "info_hash": hash,
                    "source": source.source,
                    "ok": source.ok,
                    "detail": source.detail,
                })
            ));
        } else {
            eprintln!(
                "swarmwall monitor: line {} {hash} via {}: {} ({})",
                report.work.line,
                source.source,
                if source.ok { "ok" } else { "failed" },
                source.detail
            );
        }
    }
    if report.sources.is_empty() {
        eprintln!(
            "swarmwall monitor: line {} {hash}: no tracker and no DHT bootstrap node to ask",
            report.work.line
        );
    }
}

fn leak_line(leak: &Leak, json: bool) -> String {
    let hash = hex_of(&leak.info_hash);
    let tracker = match &leak.source {
        LeakSource::Tracker(url) => Some(url.as_str()),
        LeakSource::Dht => None,
    };
    if json {
        serde_json::json!({
            "event": "leak",
            "time": monitor::rfc3339(leak.time),
            "info_hash": hash,
            "address": leak.address.to_string(),
            "port": leak.port,
            "source": leak.source.kind(),
            "tracker": tracker,
            "peer_client": leak.peer_client,
        })
        .to_string()
    } else {
        let mut line = format!(
            "LEAK {} info_hash={hash} address={} port={} source={}",
            monitor::rfc3339(leak.time),
            leak.address,
            leak.port,
            leak.source.kind()
        );
        if let Some(url) = tracker {
            line.push_str(&format!(" tracker={url}"));
        }
        if let Some(client) = &leak.peer_client {
            line.push_str(&format!(" client={client}"));
        }
        line
    }
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
