//! `swarmwall strikes list|clear|suspend|unsuspend`: the graduated-response state, read and
//! changed directly in the state store (the embedded file only while no server holds it open;
//! Redis at any time).

use std::process::ExitCode;
use std::time::Duration;

use swarmwall_server::audit::AuditLog;
use swarmwall_server::metrics::Metrics;
use swarmwall_server::store::unix_now_ms;
use swarmwall_server::strikes::{StrikeSubject, Strikes};

use super::store::{StoreLocation, runtime};

/// Arguments of `swarmwall strikes`.
#[derive(Debug, clap::Args)]
pub(crate) struct StrikesArgs {
    #[command(subcommand)]
    command: StrikesCommand,
    #[command(flatten)]
    location: StoreLocation,
}

#[derive(Debug, clap::Subcommand)]
enum StrikesCommand {
    /// Subjects with incidents in the long window or a suspension.
    List {
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Forget a subject's incidents and suspension (or everyone's with --all).
    Clear {
        /// Account name, or `client:HASH` for an unauthenticated client.
        subject: Option<String>,
        /// Clear every subject.
        #[arg(long, conflicts_with = "subject")]
        all: bool,
    },
    /// Suspend a subject now (replaces any current suspension).
    Suspend {
        /// Account name, or `client:HASH`.
        subject: String,
        /// How long (`30m`, `2h`, `1d`).
        #[arg(long = "for", value_parser = humantime_duration, default_value = "1h")]
        duration: Duration,
    },
    /// Lift a subject's suspension (its incidents stay; see `clear`).
    Unsuspend {
        /// Account name, or `client:HASH`.
        subject: String,
    },
}

fn humantime_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = text
        .find(|c: char| !c.is_ascii_digit())
        .map_or((text, "s"), |at| text.split_at(at));
    let number: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration such as 30m, 2h, 1d"))?;
    let seconds = match unit.trim() {
        "s" | "sec" => 1,
        "m" | "min" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return Err(format!("`{text}` is not a duration such as 30m, 2h, 1d")),
    };
    Ok(Duration::from_secs(number.saturating_mul(seconds)))
}

/// Run `swarmwall strikes`.
pub(crate) fn run(args: StrikesArgs) -> anyhow::Result<ExitCode> {
    let config = args.location.config()?;
    runtime()?.block_on(async {
        let store = args.location.open(&config).await?;
        let strikes = Strikes::with_config(
            store,
            &config.policy.strikes,
            std::sync::Arc::new(Metrics::new()),
            AuditLog::disabled(),
        );
        let now = unix_now_ms();
        match args.command {
            StrikesCommand::List { json } => {
                let records = strikes.list(now).await?;
                if json {
                    for record in &records {
                        println!("{}", serde_json::to_string(record)?);
                    }
                } else {
                    let settings = strikes.settings();
                    println!(
                        "{:<40} {:>9} {:>9} {:>12} {:>14}",
                        "SUBJECT",
                        format!("IN {}", short(settings.window)),
                        format!("IN {}", short(settings.long_window)),
                        "LAST (AGO)",
                        "SUSPENDED FOR"
                    );
                    for record in &records {
                        println!(
                            "{:<40} {:>9} {:>9} {:>12} {:>14}",
                            record.subject.store_key(),
                            record.incidents,
                            record.incidents_long,
                            record
                                .last_incident_ms
                                .map_or("-".to_owned(), |t| ago(now.saturating_sub(t))),
                            record
                                .suspended_until_ms
                                .map_or("-".to_owned(), |t| ago(t.saturating_sub(now))),
                        );
                    }
                    eprintln!("{} subject(s)", records.len());
                }
            }
            StrikesCommand::Clear { subject, all } => {
                let subjects: Vec<StrikeSubject> = match (subject, all) {
                    (Some(subject), _) => vec![StrikeSubject::from_store_key(&subject)],
                    (None, true) => strikes
                        .list(now)
                        .await?
                        .into_iter()
                        .map(|record| record.subject)
                        .collect(),
                    (None, false) => anyhow::bail!("name a SUBJECT to clear, or pass --all"),
                };
                for subject in &subjects {
                    strikes.clear(subject).await?;
                }
                println!("cleared {} subject(s)", subjects.len());
            }
            StrikesCommand::Suspend { subject, duration } => {
                let subject = StrikeSubject::from_store_key(&subject);
                let until = now.saturating_add(u64::try_from(duration.as_millis()).unwrap_or(0));
                strikes.suspend(&subject, until).await?;
                println!("suspended {subject} for {}", ago(until - now));
            }
            StrikesCommand::Unsuspend { subject } => {
                let subject = StrikeSubject::from_store_key(&subject);
                strikes.unsuspend(&subject).await?;
                println!("unsuspended {subject}");
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// `1h02m`, `45s`.
fn ago(ms: u64) -> String {
    let s = ms / 1_000;
    match s {
        0..60 => format!("{s}s"),
        60..3_600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3_600, (s % 3_600) / 60),
    }
}

fn short(duration: Duration) -> String {
    ago(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
}
