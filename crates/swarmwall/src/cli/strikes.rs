//! `swarmwall strikes list|clear|suspend|unsuspend`: the graduated-response state, read and
//! changed directly in the state store (the embedded file only while no server holds it open;
//! Redis at any time).

use std::process::ExitCode;
use std::time::Duration;

use swarmwall_server::audit::AuditLog;
use swarmwall_server::metrics::Metrics;
use swarmwall_server::store::unix_now_ms;
use swarmwall_server::strikes::{StrikeSubject, Strikes};

use super::admin_audit::AdminAudit;
use super::store::{StoreLocation, runtime};

/// Subjects named in the `admin_action` record of `clear --all` (the count is always there).
const MAX_LISTED_SUBJECTS: usize = 1_000;

/// Arguments of `swarmwall strikes`.
#[derive(Debug, clap::Args)]
pub(crate) struct StrikesArgs {
    #[command(subcommand)]
    command: StrikesCommand,
    #[command(flatten)]
    location: StoreLocation,
    /// Security event log that receives `admin_action` records of clear/suspend/unsuspend
    /// (default: as `serve`); `""` for none.
    #[arg(long, global = true, value_name = "FILE")]
    audit_log: Option<std::path::PathBuf>,
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
    let audit = match &args.command {
        StrikesCommand::List { .. } => None,
        _ => Some(AdminAudit::open(
            &config.security,
            args.audit_log.as_deref(),
            args.location.data_dir(),
        )?),
    };
    let record = |action: &str,
                  subject: Option<&str>,
                  details: serde_json::Value,
                  outcome: &anyhow::Result<()>| {
        audit.as_ref().map_or(Ok(()), |audit| {
            audit.record(action, subject, details, outcome)
        })
    };
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
                let mut cleared = Vec::new();
                let mut outcome = Ok(());
                for subject in &subjects {
                    if let Err(error) = strikes.clear(subject).await {
                        outcome = Err(anyhow::Error::from(error));
                        break;
                    }
                    cleared.push(subject.store_key());
                }
                if all {
                    let listed: Vec<_> = cleared.iter().take(MAX_LISTED_SUBJECTS).collect();
                    record(
                        "strikes_clear_all",
                        None,
                        serde_json::json!({ "cleared": cleared.len(), "subjects": listed }),
                        &outcome,
                    )?;
                } else {
                    let subject = subjects.first().map(StrikeSubject::store_key);
                    record(
                        "strikes_clear",
                        subject.as_deref(),
                        serde_json::json!({}),
                        &outcome,
                    )?;
                }
                outcome?;
                println!("cleared {} subject(s)", subjects.len());
            }
            StrikesCommand::Suspend { subject, duration } => {
                let subject = StrikeSubject::from_store_key(&subject);
                let until = now.saturating_add(u64::try_from(duration.as_millis()).unwrap_or(0));
                let outcome = strikes.suspend(&subject, until).await.map_err(Into::into);
                record(
                    "strikes_suspend",
                    Some(&subject.store_key()),
                    serde_json::json!({ "duration_secs": duration.as_secs(), "until_ms": until }),
                    &outcome,
                )?;
                outcome?;
                println!("suspended {subject} for {}", ago(until - now));
            }
            StrikesCommand::Unsuspend { subject } => {
                let subject = StrikeSubject::from_store_key(&subject);
                let outcome = strikes.unsuspend(&subject).await.map_err(Into::into);
                record(
                    "strikes_unsuspend",
                    Some(&subject.store_key()),
                    serde_json::json!({}),
                    &outcome,
                )?;
                outcome?;
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
