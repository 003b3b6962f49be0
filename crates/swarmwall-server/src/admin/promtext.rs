//! A small parser of the Prometheus / OpenMetrics text format: enough for the status endpoint
//! to read totals back from the encoding `/metrics` serves, and for tests to scrape.
//!
//! Comment lines (`# HELP`, `# TYPE`, `# UNIT`, `# EOF`) are skipped; each sample line is
//! `name{label="value",...} value [timestamp]`. Malformed lines are errors, never panics.

use std::collections::BTreeMap;

/// One sample: metric name (with any `_total`/`_bucket` suffix), labels, value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Full sample name, e.g. `swarmwall_blocks_total`.
    pub name: String,
    /// Labels by name.
    pub labels: BTreeMap<String, String>,
    /// Value.
    pub value: f64,
}

/// A parsed exposition.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scrape {
    /// Samples in exposition order.
    pub samples: Vec<Sample>,
}

/// A line that is not valid text format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: &'static str,
}

impl Scrape {
    /// Parse `text`.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let mut samples = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let sample = parse_sample(line).map_err(|message| ParseError {
                line: index + 1,
                message,
            })?;
            samples.push(sample);
        }
        Ok(Self { samples })
    }

    /// Sum of every sample called `name` whose labels include all of `filter`.
    pub fn sum(&self, name: &str, filter: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|sample| sample.name == name && matches(sample, filter))
            .map(|sample| sample.value)
            .sum()
    }

    /// Sum of `name` grouped by the value of label `by` (samples without it are skipped).
    pub fn sum_by(&self, name: &str, by: &str) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for sample in self.samples.iter().filter(|sample| sample.name == name) {
            if let Some(key) = sample.labels.get(by) {
                *out.entry(key.clone()).or_insert(0.0) += sample.value;
            }
        }
        out
    }

    /// True when a sample called `name` exists.
    pub fn has(&self, name: &str) -> bool {
        self.samples.iter().any(|sample| sample.name == name)
    }
}

fn matches(sample: &Sample, filter: &[(&str, &str)]) -> bool {
    filter
        .iter()
        .all(|(key, value)| sample.labels.get(*key).is_some_and(|v| v == value))
}

fn parse_sample(line: &str) -> Result<Sample, &'static str> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_ascii_whitespace())
        .ok_or("no value")?;
    let name = &line[..name_end];
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    {
        return Err("bad metric name");
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(after) = rest.strip_prefix('{') {
        rest = parse_labels(after, &mut labels)?;
    }
    let mut fields = rest.split_ascii_whitespace();
    let value = fields.next().ok_or("no value")?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other.parse::<f64>().map_err(|_| "bad value")?,
    };
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// Parse `key="value",...}` and return what follows the closing brace.
fn parse_labels<'a>(
    mut rest: &'a str,
    labels: &mut BTreeMap<String, String>,
) -> Result<&'a str, &'static str> {
    loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix('}') {
            return Ok(after);
        }
        let eq = rest.find('=').ok_or("label without value")?;
        let key = rest[..eq].trim();
        if key.is_empty() {
            return Err("empty label name");
        }
        rest = rest[eq + 1..]
            .strip_prefix('"')
            .ok_or("label value not quoted")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err("unterminated label value"),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => return Err("unterminated escape"),
                },
                Some((_, c)) => value.push(c),
            }
        };
        labels.insert(key.to_owned(), value);
        rest = rest[end + 1..].trim_start();
        if let Some(after) = rest.strip_prefix(',') {
            rest = after;
        } else if !rest.starts_with('}') {
            return Err("expected , or } after label");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_counters_gauges_and_labels() {
        let text = "# HELP x_total X.\n# TYPE x counter\nx_total{form=\"dht\",t=\"udp\"} 3\n\
                    x_total{form=\"mse\",t=\"tcp\"} 2\ng 1.5\nq{a=\"quote\\\"d\"} +Inf\n# EOF\n";
        let scrape = Scrape::parse(text).unwrap();
        assert_eq!(scrape.samples.len(), 4);
        assert_eq!(scrape.sum("x_total", &[]), 5.0);
        assert_eq!(scrape.sum("x_total", &[("form", "dht")]), 3.0);
        assert_eq!(scrape.sum_by("x_total", "t")["tcp"], 2.0);
        assert_eq!(scrape.sum("g", &[]), 1.5);
        assert_eq!(scrape.samples[3].labels["a"], "quote\"d");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            "x{",
            "x{a=1} 2",
            "x{a=\"1\" 2",
            "x",
            "x{a=\"1\"} y",
            "{} 1",
            "x{=\"\"} 1",
        ] {
            assert!(Scrape::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn reads_the_real_registry() {
        let metrics = crate::metrics::Metrics::new();
        metrics.sessions_active.set(2);
        let scrape = Scrape::parse(&metrics.encode()).unwrap();
        assert_eq!(scrape.sum("swarmwall_sessions_active", &[]), 2.0);
    }
}
