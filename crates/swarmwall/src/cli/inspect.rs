//! `swarmwall inspect`: classify the flows of pcap/pcapng captures offline with the same
//! classifier the proxy runs, and print a summary or one JSON object per flow.
//!
//! Exit status: 0 when every file was read (a truncated or part-malformed file still counts:
//! its flows up to the damage are reported, with a warning naming the packet); 1 when at least
//! one file could not be read at all (missing, unreadable, not a capture); 2 on usage errors.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use swarmwall_capture::{CaptureReport, FlowRecord, InspectOptions, PacketStats};
use swarmwall_core::classify::MseStrictness;

/// Files at least this large get a progress bar (when stderr is a terminal).
const PROGRESS_MIN_BYTES: u64 = 8 * 1024 * 1024;

/// Arguments of `swarmwall inspect`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Exit status: 0 when every file was read (a truncated file reports the \
flows read before the damage, with a warning); 1 when a file could not be read at all; 2 on \
usage errors."
)]
pub(crate) struct InspectArgs {
    /// pcap or pcapng files to inspect (`-` reads standard input, e.g. `tcpdump -w - | ...`).
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Print one JSON object per flow per line instead of the summary.
    #[arg(long)]
    json: bool,
    /// How far the encrypted-BitTorrent (MSE) heuristic may go on its own.
    #[arg(long, value_enum, default_value_t = Strictness::Corroborated)]
    mse_strictness: Strictness,
    /// No progress bar and no warnings on stderr (errors are still printed).
    #[arg(long, short)]
    quiet: bool,
    /// Most flows tracked at once per file; the least recently seen are finished early.
    #[arg(long, default_value_t = 1 << 20, value_name = "N")]
    max_flows: usize,
    /// Do not look for SOCKS5 negotiations (classify the raw TCP/UDP bytes only).
    #[arg(long)]
    no_socks5: bool,
}

/// `--mse-strictness` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Strictness {
    /// Never flag on the MSE shape alone.
    Off,
    /// Flag MSE-shaped flows only with corroborating BitTorrent evidence.
    Corroborated,
    /// Flag every MSE-shaped flow.
    Aggressive,
}

impl From<Strictness> for MseStrictness {
    fn from(value: Strictness) -> Self {
        match value {
            Strictness::Off => Self::Off,
            Strictness::Corroborated => Self::Corroborated,
            Strictness::Aggressive => Self::Aggressive,
        }
    }
}

/// One JSON output line.
#[derive(Debug, serde::Serialize)]
struct JsonFlow<'a> {
    file: &'a str,
    l4: &'static str,
    a: String,
    b: String,
    app: String,
    bittorrent: bool,
    form: Option<&'static str>,
    packets: u64,
    bytes: u64,
}

/// Totals for the summary.
#[derive(Debug, Default)]
struct Summary {
    files: u64,
    stats: PacketStats,
    flows: u64,
    /// label → (flows, packets, bytes)
    labels: BTreeMap<String, (u64, u64, u64)>,
    /// form → (tcp flows, udp flows)
    forms: BTreeMap<&'static str, (u64, u64)>,
}

/// Run `swarmwall inspect`.
pub(crate) fn run(args: InspectArgs) -> anyhow::Result<ExitCode> {
    let options = InspectOptions {
        mse_strictness: args.mse_strictness.into(),
        max_flows: args.max_flows.max(1),
        socks5: !args.no_socks5,
    };
    let stdout = std::io::stdout();
    let mut out = BufWriter::with_capacity(64 * 1024, stdout.lock());
    let show_progress = !args.quiet && std::io::stderr().is_terminal();
    let mut summary = Summary::default();
    let mut unreadable = 0u32;
    for path in &args.files {
        let name = path.display().to_string();
        let report = match inspect_file(path, options, show_progress) {
            Ok(report) => report,
            Err(error) => {
                eprintln!("swarmwall: error: {name}: {error:#}");
                unreadable += 1;
                continue;
            }
        };
        if let Some(stopped) = &report.stopped
            && !args.quiet
        {
            eprintln!(
                "swarmwall: warning: {name}: {stopped}; reporting the {} flow(s) read before it",
                report.flows.len()
            );
        }
        if args.json {
            for flow in &report.flows {
                serde_json::to_writer(&mut out, &json_flow(&name, flow))?;
                out.write_all(b"\n")?;
            }
        }
        summary.add(&report);
    }
    if !args.json {
        summary.print(&mut out)?;
    }
    out.flush()?;
    Ok(if unreadable > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn inspect_file(
    path: &std::path::Path,
    options: InspectOptions,
    show_progress: bool,
) -> anyhow::Result<CaptureReport> {
    if path.as_os_str() == "-" {
        let stdin = std::io::stdin();
        return Ok(swarmwall_capture::inspect(stdin, None, options, |_| {})?);
    }
    let file = File::open(path).context("cannot open")?;
    let size = file.metadata().ok().map(|m| m.len());
    let bar = match size {
        Some(size) if show_progress && size >= PROGRESS_MIN_BYTES => {
            let bar = ProgressBar::new(size);
            if let Ok(style) = ProgressStyle::with_template(
                "{msg} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta})",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message(path.display().to_string());
            bar
        }
        _ => ProgressBar::hidden(),
    };
    let result =
        swarmwall_capture::inspect(file, size, options, |consumed| bar.set_position(consumed));
    bar.finish_and_clear();
    Ok(result?)
}

fn json_flow<'a>(file: &'a str, flow: &FlowRecord) -> JsonFlow<'a> {
    let form = flow.verdict.bittorrent_form();
    JsonFlow {
        file,
        l4: flow.l4.as_str(),
        a: flow.initiator.to_string(),
        b: flow.responder.to_string(),
        app: flow.label(),
        bittorrent: form.is_some(),
        form: form.map(|form| form.as_str()),
        packets: flow.packets,
        bytes: flow.bytes,
    }
}

impl Summary {
    fn add(&mut self, report: &CaptureReport) {
        self.files += 1;
        let s = &mut self.stats;
        s.packets += report.stats.packets;
        s.tcp_udp += report.stats.tcp_udp;
        s.fragments += report.stats.fragments;
        s.other += report.stats.other;
        s.unsupported_link += report.stats.unsupported_link;
        s.malformed += report.stats.malformed;
        s.evicted_flows += report.stats.evicted_flows;
        for flow in &report.flows {
            self.flows += 1;
            let entry = self.labels.entry(flow.label()).or_default();
            entry.0 += 1;
            entry.1 += flow.packets;
            entry.2 += flow.bytes;
            if let Some(form) = flow.verdict.bittorrent_form() {
                let entry = self.forms.entry(form.as_str()).or_default();
                match flow.l4 {
                    swarmwall_capture::L4::Tcp => entry.0 += 1,
                    swarmwall_capture::L4::Udp => entry.1 += 1,
                }
            }
        }
    }

    fn print(&self, out: &mut impl Write) -> std::io::Result<()> {
        let s = &self.stats;
        writeln!(
            out,
            "{} file(s), {} packets ({} TCP/UDP, {} IP fragments skipped, {} other, {} \
             unsupported link type, {} malformed), {} flows",
            self.files,
            s.packets,
            s.tcp_udp,
            s.fragments,
            s.other,
            s.unsupported_link,
            s.malformed,
            self.flows
        )?;
        if s.evicted_flows > 0 {
            writeln!(
                out,
                "{} flows finished early (flow table full)",
                s.evicted_flows
            )?;
        }
        writeln!(out)?;
        writeln!(
            out,
            "{:<32} {:>8} {:>10} {:>14}",
            "protocol", "flows", "packets", "bytes"
        )?;
        let mut labels: Vec<_> = self.labels.iter().collect();
        labels.sort_by(|x, y| y.1.0.cmp(&x.1.0).then_with(|| x.0.cmp(y.0)));
        for (label, (flows, packets, bytes)) in labels {
            writeln!(out, "{label:<32} {flows:>8} {packets:>10} {bytes:>14}")?;
        }
        writeln!(out)?;
        let total: u64 = self.forms.values().map(|(t, u)| t + u).sum();
        writeln!(out, "BitTorrent flows: {total}")?;
        for (form, (tcp, udp)) in &self.forms {
            writeln!(out, "  {form:<24} {:>6} ({tcp} tcp, {udp} udp)", tcp + udp)?;
        }
        Ok(())
    }
}
