//! Request counters and latency histograms by method, route and status, in Prometheus text.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// Histogram bucket upper bounds in seconds.
const BUCKETS: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

#[derive(Default)]
struct Series {
    count: u64,
    sum: f64,
    buckets: [u64; BUCKETS.len()],
}

/// One gauge sample to render beside the request series.
pub struct Gauge {
    /// Metric name.
    pub name: &'static str,
    /// HELP text.
    pub help: &'static str,
    /// Label pairs.
    pub labels: Vec<(&'static str, String)>,
    /// Value.
    pub value: f64,
}

/// All request series.
#[derive(Default)]
pub struct Metrics {
    series: Mutex<BTreeMap<(String, String, u16), Series>>,
    /// Calls refused for a missing key scope, by key name and missing scope (both bounded:
    /// key names come from the configuration).
    denied: Mutex<BTreeMap<(String, &'static str), u64>>,
}

impl Metrics {
    /// Records one request.
    pub fn observe(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let mut series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        let s = series.entry((method.to_string(), route.to_string(), status)).or_default();
        s.count += 1;
        s.sum += seconds;
        for (i, le) in BUCKETS.iter().enumerate() {
            if seconds <= *le {
                s.buckets[i] += 1;
            }
        }
    }

    /// Records one call refused because the key lacks `scope`.
    pub fn record_denied(&self, key: &str, scope: &'static str) {
        let mut denied = self.denied.lock().unwrap_or_else(|p| p.into_inner());
        *denied.entry((key.to_string(), scope)).or_default() += 1;
    }

    /// Prometheus exposition text, with `gauges` appended (grouped by name in the given order).
    pub fn render(&self, gauges: &[Gauge]) -> String {
        let mut out = String::new();
        let series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        out.push_str("# HELP novacron_http_requests_total Requests answered, by method, route and status.\n");
        out.push_str("# TYPE novacron_http_requests_total counter\n");
        for ((m, r, s), v) in series.iter() {
            let _ = writeln!(out, "novacron_http_requests_total{{method=\"{m}\",route=\"{r}\",status=\"{s}\"}} {}", v.count);
        }
        out.push_str("# HELP novacron_http_request_duration_seconds Time to answer, by method, route and status.\n");
        out.push_str("# TYPE novacron_http_request_duration_seconds histogram\n");
        for ((m, r, s), v) in series.iter() {
            let labels = format!("method=\"{m}\",route=\"{r}\",status=\"{s}\"");
            for (i, le) in BUCKETS.iter().enumerate() {
                let _ = writeln!(out, "novacron_http_request_duration_seconds_bucket{{{labels},le=\"{le}\"}} {}", v.buckets[i]);
            }
            let _ = writeln!(out, "novacron_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}", v.count);
            let _ = writeln!(out, "novacron_http_request_duration_seconds_sum{{{labels}}} {}", v.sum);
            let _ = writeln!(out, "novacron_http_request_duration_seconds_count{{{labels}}} {}", v.count);
        }
        drop(series);
        out.push_str("# HELP novacron_auth_denied_total Calls refused because the API key lacks the scope, by key name and missing scope.\n");
        out.push_str("# TYPE novacron_auth_denied_total counter\n");
        for ((key, scope), count) in self.denied.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = writeln!(out, "novacron_auth_denied_total{{key=\"{key}\",scope=\"{scope}\"}} {count}");
        }
        let mut last_name = "";
        for Gauge { name, help, labels, value } in gauges {
            if *name != last_name {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
                last_name = name;
            }
            let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
            let labels = if labels.is_empty() { String::new() } else { format!("{{{}}}", labels.join(",")) };
            let _ = writeln!(out, "{name}{labels} {value}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_and_buckets() {
        let m = Metrics::default();
        m.observe("GET", "/v1/vms/{id}", 200, 0.002);
        m.observe("GET", "/v1/vms/{id}", 200, 0.2);
        m.record_denied("reader", "write");
        m.record_denied("reader", "write");
        let text = m.render(&[Gauge { name: "novacron_objects", help: "Objects stored.", labels: vec![("kind", "vms".into())], value: 2.0 }]);
        assert!(text.contains("novacron_http_requests_total{method=\"GET\",route=\"/v1/vms/{id}\",status=\"200\"} 2"));
        assert!(text.contains("le=\"0.0025\"} 1"));
        assert!(text.contains("le=\"+Inf\"} 2"));
        assert!(text.contains("novacron_objects{kind=\"vms\"} 2"));
        assert!(text.contains("novacron_auth_denied_total{key=\"reader\",scope=\"write\"} 2"));
    }
}
