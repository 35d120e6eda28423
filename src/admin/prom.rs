//! Prometheus text exposition format (0.0.4) writer shared by every metrics
//! renderer, so escaping and `# HELP`/`# TYPE` lines are right in one place.

use std::fmt::Write;

/// Appends metric families in Prometheus text format to a `String`.
///
/// Each method writes one whole family (`# HELP`, `# TYPE`, then every
/// sample), because the format forbids repeating a family's header: give all
/// label sets of one metric in a single call. Names are passed in full, so a
/// counter's name should already end in `_total`.
///
/// ```
/// use respite::admin::PromWriter;
///
/// let mut out = String::new();
/// let mut metrics = PromWriter::new(&mut out);
/// metrics.counter("respite_connections_total", "Client connections accepted.", 3);
/// assert_eq!(
///     out,
///     concat!(
///         "# HELP respite_connections_total Client connections accepted.\n",
///         "# TYPE respite_connections_total counter\n",
///         "respite_connections_total 3\n",
///     )
/// );
/// ```
pub struct PromWriter<'a>(pub &'a mut String);

/// One labelled series of a histogram family, for [`PromWriter::histograms`].
#[derive(Debug, Clone, Copy)]
pub struct Histogram<'a> {
    /// Labels of this series; must not contain `le`, which the writer adds.
    pub labels: &'a [(&'a str, &'a str)],
    /// `(upper bound in seconds, cumulative count)` in ascending bound order.
    /// A final `+Inf` bucket is added from `count` unless already present.
    pub buckets: &'a [(f64, u64)],
    /// Sum of all observed values, in seconds.
    pub sum: f64,
    /// Number of observations.
    pub count: u64,
}

impl<'a> PromWriter<'a> {
    pub fn new(out: &'a mut String) -> Self {
        PromWriter(out)
    }

    /// A counter without labels.
    pub fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.counter_with_labels(name, help, &[(&[], value)]);
    }

    /// A gauge without labels.
    pub fn gauge(&mut self, name: &str, help: &str, value: f64) {
        self.gauge_with_labels(name, help, &[(&[], value)]);
    }

    /// A counter family: one sample per label set.
    pub fn counter_with_labels(
        &mut self,
        name: &str,
        help: &str,
        samples: &[(&[(&str, &str)], u64)],
    ) {
        self.header(name, help, "counter");
        for (labels, value) in samples {
            self.sample(name, "", labels, None);
            push_display(self.0, value);
            self.0.push('\n');
        }
    }

    /// A gauge family: one sample per label set.
    pub fn gauge_with_labels(
        &mut self,
        name: &str,
        help: &str,
        samples: &[(&[(&str, &str)], f64)],
    ) {
        self.header(name, help, "gauge");
        for (labels, value) in samples {
            self.sample(name, "", labels, None);
            push_f64(self.0, *value);
            self.0.push('\n');
        }
    }

    /// A histogram family with a single series.
    pub fn histogram(
        &mut self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        buckets: &[(f64, u64)],
        sum: f64,
        count: u64,
    ) {
        self.histograms(
            name,
            help,
            &[Histogram {
                labels,
                buckets,
                sum,
                count,
            }],
        );
    }

    /// A histogram family with one series per label set (e.g. per command).
    pub fn histograms(&mut self, name: &str, help: &str, series: &[Histogram<'_>]) {
        self.header(name, help, "histogram");
        for h in series {
            debug_assert!(
                h.labels.iter().all(|(k, _)| *k != "le"),
                "`le` is reserved for histogram buckets"
            );
            let mut saw_inf = false;
            for &(bound, cumulative) in h.buckets {
                saw_inf |= bound == f64::INFINITY;
                self.sample(name, "_bucket", h.labels, Some(bound));
                push_display(self.0, cumulative);
                self.0.push('\n');
            }
            // Prometheus requires a +Inf bucket equal to the count; callers
            // usually keep only finite bounds, so it is added here.
            if !saw_inf {
                self.sample(name, "_bucket", h.labels, Some(f64::INFINITY));
                push_display(self.0, h.count);
                self.0.push('\n');
            }
            self.sample(name, "_sum", h.labels, None);
            push_f64(self.0, h.sum);
            self.0.push('\n');
            self.sample(name, "_count", h.labels, None);
            push_display(self.0, h.count);
            self.0.push('\n');
        }
    }

    fn header(&mut self, name: &str, help: &str, kind: &str) {
        debug_assert!(is_metric_name(name), "invalid metric name {name:?}");
        if !help.is_empty() {
            self.0.push_str("# HELP ");
            self.0.push_str(name);
            self.0.push(' ');
            escape_help(self.0, help);
            self.0.push('\n');
        }
        self.0.push_str("# TYPE ");
        self.0.push_str(name);
        self.0.push(' ');
        self.0.push_str(kind);
        self.0.push('\n');
    }

    /// Writes `name{suffix}{labels} ` up to the value.
    fn sample(&mut self, name: &str, suffix: &str, labels: &[(&str, &str)], le: Option<f64>) {
        let out = &mut *self.0;
        out.push_str(name);
        out.push_str(suffix);
        if !labels.is_empty() || le.is_some() {
            out.push('{');
            let mut first = true;
            for (key, value) in labels {
                debug_assert!(is_label_name(key), "invalid label name {key:?}");
                if !first {
                    out.push(',');
                }
                first = false;
                out.push_str(key);
                out.push_str("=\"");
                escape_label_value(out, value);
                out.push('"');
            }
            if let Some(le) = le {
                if !first {
                    out.push(',');
                }
                out.push_str("le=\"");
                push_f64(out, le);
                out.push('"');
            }
            out.push('}');
        }
        out.push(' ');
    }
}

fn push_display(out: &mut String, value: impl std::fmt::Display) {
    // Writing into a String cannot fail.
    let _ = write!(out, "{value}");
}

/// Formats a float the way Prometheus parses it: Rust writes infinity as
/// `inf`, which the text format does not accept.
fn push_f64(out: &mut String, value: f64) {
    if value == f64::INFINITY {
        out.push_str("+Inf");
    } else if value == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else if value.is_nan() {
        out.push_str("NaN");
    } else {
        push_display(out, value);
    }
}

/// HELP text escapes only backslash and newline.
fn escape_help(out: &mut String, help: &str) {
    for c in help.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Label values escape backslash, double quote and newline; label values often
/// come from clients (key names, command names), so this is not optional.
fn escape_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(f: impl FnOnce(&mut PromWriter<'_>)) -> String {
        let mut out = String::new();
        f(&mut PromWriter::new(&mut out));
        out
    }

    #[test]
    fn counter_writes_help_type_and_sample() {
        let out = render(|w| w.counter("respite_requests_total", "Requests seen.", 42));
        assert_eq!(
            out,
            "# HELP respite_requests_total Requests seen.\n\
             # TYPE respite_requests_total counter\n\
             respite_requests_total 42\n"
        );
    }

    #[test]
    fn empty_help_omits_help_line() {
        let out = render(|w| w.counter("x_total", "", 0));
        assert_eq!(out, "# TYPE x_total counter\nx_total 0\n");
    }

    #[test]
    fn gauge_formats_floats_prometheus_style() {
        let out = render(|w| {
            w.gauge("g_int", "Integral.", 3.0);
            w.gauge("g_frac", "Fractional.", -0.25);
            w.gauge("g_inf", "Infinite.", f64::INFINITY);
            w.gauge("g_ninf", "Negative infinite.", f64::NEG_INFINITY);
            w.gauge("g_nan", "Not a number.", f64::NAN);
        });
        assert_eq!(
            out,
            "# HELP g_int Integral.\n# TYPE g_int gauge\ng_int 3\n\
             # HELP g_frac Fractional.\n# TYPE g_frac gauge\ng_frac -0.25\n\
             # HELP g_inf Infinite.\n# TYPE g_inf gauge\ng_inf +Inf\n\
             # HELP g_ninf Negative infinite.\n# TYPE g_ninf gauge\ng_ninf -Inf\n\
             # HELP g_nan Not a number.\n# TYPE g_nan gauge\ng_nan NaN\n"
        );
    }

    #[test]
    fn counter_with_labels_writes_one_header_and_escapes_values() {
        let out = render(|w| {
            w.counter_with_labels(
                "respite_commands_total",
                "Commands by name.",
                &[
                    (&[("cmd", "get"), ("node", "a:6379")], 5),
                    (&[("cmd", "we\"ird\\na\nme")], 1),
                    (&[], 0),
                ],
            )
        });
        assert_eq!(
            out,
            "# HELP respite_commands_total Commands by name.\n\
             # TYPE respite_commands_total counter\n\
             respite_commands_total{cmd=\"get\",node=\"a:6379\"} 5\n\
             respite_commands_total{cmd=\"we\\\"ird\\\\na\\nme\"} 1\n\
             respite_commands_total 0\n"
        );
    }

    #[test]
    fn gauge_with_labels_writes_each_series() {
        let out = render(|w| {
            w.gauge_with_labels(
                "up",
                "Node reachable.",
                &[(&[("node", "a")], 1.0), (&[("node", "b")], 0.0)],
            )
        });
        assert_eq!(
            out,
            "# HELP up Node reachable.\n# TYPE up gauge\nup{node=\"a\"} 1\nup{node=\"b\"} 0\n"
        );
    }

    #[test]
    fn help_escapes_backslash_and_newline_but_not_quotes() {
        let out = render(|w| w.counter("c_total", "a \"b\" c\\d\ne", 1));
        assert_eq!(
            out,
            "# HELP c_total a \"b\" c\\\\d\\ne\n# TYPE c_total counter\nc_total 1\n"
        );
    }

    #[test]
    fn histogram_without_labels_adds_inf_sum_and_count() {
        let out = render(|w| {
            w.histogram(
                "respite_latency_seconds",
                "Request latency.",
                &[],
                &[(0.001, 2), (0.01, 5), (1.0, 9)],
                1.5,
                10,
            )
        });
        assert_eq!(
            out,
            "# HELP respite_latency_seconds Request latency.\n\
             # TYPE respite_latency_seconds histogram\n\
             respite_latency_seconds_bucket{le=\"0.001\"} 2\n\
             respite_latency_seconds_bucket{le=\"0.01\"} 5\n\
             respite_latency_seconds_bucket{le=\"1\"} 9\n\
             respite_latency_seconds_bucket{le=\"+Inf\"} 10\n\
             respite_latency_seconds_sum 1.5\n\
             respite_latency_seconds_count 10\n"
        );
    }

    #[test]
    fn histogram_with_labels_puts_le_last_and_keeps_explicit_inf() {
        let out = render(|w| {
            w.histogram(
                "lat_seconds",
                "Latency.",
                &[("cmd", "get\"x")],
                &[(0.5, 1), (f64::INFINITY, 3)],
                0.75,
                3,
            )
        });
        assert_eq!(
            out,
            "# HELP lat_seconds Latency.\n\
             # TYPE lat_seconds histogram\n\
             lat_seconds_bucket{cmd=\"get\\\"x\",le=\"0.5\"} 1\n\
             lat_seconds_bucket{cmd=\"get\\\"x\",le=\"+Inf\"} 3\n\
             lat_seconds_sum{cmd=\"get\\\"x\"} 0.75\n\
             lat_seconds_count{cmd=\"get\\\"x\"} 3\n"
        );
    }

    #[test]
    fn histograms_share_one_header_across_series() {
        let out = render(|w| {
            w.histograms(
                "h_seconds",
                "H.",
                &[
                    Histogram {
                        labels: &[("cmd", "get")],
                        buckets: &[(0.1, 1)],
                        sum: 0.05,
                        count: 1,
                    },
                    Histogram {
                        labels: &[("cmd", "set")],
                        buckets: &[(0.1, 0)],
                        sum: 0.0,
                        count: 0,
                    },
                ],
            )
        });
        assert_eq!(
            out,
            "# HELP h_seconds H.\n# TYPE h_seconds histogram\n\
             h_seconds_bucket{cmd=\"get\",le=\"0.1\"} 1\n\
             h_seconds_bucket{cmd=\"get\",le=\"+Inf\"} 1\n\
             h_seconds_sum{cmd=\"get\"} 0.05\n\
             h_seconds_count{cmd=\"get\"} 1\n\
             h_seconds_bucket{cmd=\"set\",le=\"0.1\"} 0\n\
             h_seconds_bucket{cmd=\"set\",le=\"+Inf\"} 0\n\
             h_seconds_sum{cmd=\"set\"} 0\n\
             h_seconds_count{cmd=\"set\"} 0\n"
        );
    }

    #[test]
    fn name_checks_follow_the_data_model() {
        assert!(is_metric_name("respite:ops_total"));
        assert!(is_metric_name("_x1"));
        assert!(!is_metric_name(""));
        assert!(!is_metric_name("1x"));
        assert!(!is_metric_name("a-b"));
        assert!(is_label_name("node_1"));
        assert!(!is_label_name("a:b"));
        assert!(!is_label_name(""));
    }
}
