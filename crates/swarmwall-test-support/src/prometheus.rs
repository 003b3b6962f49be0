//! Reading the Prometheus/OpenMetrics text format.

/// The value of the sample `name` (with its labels exactly as encoded), if present.
pub fn metric_value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (sample, value) = line.rsplit_once(' ')?;
            (sample == name).then(|| value.parse().ok()).flatten()
        })
}

#[cfg(test)]
mod tests {
    use super::metric_value;

    #[test]
    fn finds_plain_and_labelled_samples_and_skips_comments() {
        let text = "# TYPE a counter\na_total 3\nb{x=\"1\"} 2.5\n# EOF\n";
        assert_eq!(metric_value(text, "a_total"), Some(3.0));
        assert_eq!(metric_value(text, "b{x=\"1\"}"), Some(2.5));
        assert_eq!(metric_value(text, "a"), None);
        assert_eq!(metric_value(text, "# TYPE a"), None);
    }
}
