//! The end of a run: a readable table, or one JSON object for scripts.

use hdrhistogram::Histogram;
use serde_json::{json, Map, Value};

use super::sys::CpuUse;

/// What a scenario measured, in display order.
#[derive(Debug, Default)]
pub struct Report {
    title: String,
    json: Map<String, Value>,
    rows: Vec<(String, String)>,
    /// Integrity failures (loss at QoS 1/2, QoS 2 duplicates, client errors): the run fails.
    errors: Vec<String>,
    /// Things worth knowing that are not failures (QoS 0 loss, for one).
    notes: Vec<String>,
}

impl Report {
    pub fn new(scenario: &str, title: String) -> Report {
        let mut r = Report {
            title,
            ..Report::default()
        };
        r.json.insert("scenario".into(), json!(scenario));
        r
    }

    /// A value for JSON only.
    pub fn set(&mut self, key: &str, v: impl Into<Value>) {
        self.json.insert(key.into(), v.into());
    }

    /// A value for JSON and a row of the table.
    pub fn row(&mut self, key: &str, v: impl Into<Value>, label: &str, shown: String) {
        self.json.insert(key.into(), v.into());
        self.rows.push((label.into(), shown));
    }

    /// A row of the table only.
    pub fn line(&mut self, label: &str, shown: String) {
        self.rows.push((label.into(), shown));
    }

    pub fn error(&mut self, e: String) {
        self.errors.push(e);
    }

    pub fn note(&mut self, n: String) {
        self.notes.push(n);
    }

    pub fn latency(&mut self, h: &Histogram<u64>) {
        if h.is_empty() {
            return;
        }
        let q = |p: f64| h.value_at_quantile(p);
        self.json.insert(
            "latency_us".into(),
            json!({
                "p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "p999": q(0.999),
                "max": h.max(), "mean": (h.mean() * 10.0).round() / 10.0, "count": h.len(),
            }),
        );
        self.rows.push((
            "latency".into(),
            format!(
                "p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
                us(q(0.5)),
                us(q(0.9)),
                us(q(0.99)),
                us(q(0.999)),
                us(h.max())
            ),
        ));
    }

    /// CPU of the generator and the broker; `active_secs` is the time the load ran (CPU % is
    /// relative to it), `messages` what the per-message figures divide by.
    pub fn cpu(&mut self, c: &CpuUse, active_secs: f64, messages: u64) {
        let pct = |s: f64| {
            if active_secs > 0.0 {
                100.0 * s / active_secs
            } else {
                0.0
            }
        };
        let per_msg = |s: f64| {
            if messages > 0 {
                s * 1e6 / messages as f64
            } else {
                0.0
            }
        };
        let mut cpu = json!({
            "generator_secs": round3(c.generator_secs),
            "generator_pct": round1(pct(c.generator_secs)),
            "generator_us_per_msg": round3(per_msg(c.generator_secs)),
        });
        let mut shown = format!(
            "generator {:.2} s ({:.0}% of a core)",
            c.generator_secs,
            pct(c.generator_secs)
        );
        if let Some(b) = c.broker_secs {
            cpu["broker_secs"] = json!(round3(b));
            cpu["broker_pct"] = json!(round1(pct(b)));
            cpu["broker_us_per_msg"] = json!(round3(per_msg(b)));
            shown.push_str(&format!(
                "   broker {:.2} s ({:.0}% of a core, {:.2} µs/msg)",
                b,
                pct(b),
                per_msg(b)
            ));
        }
        if let Some(rss) = c.broker_rss_kib {
            cpu["broker_rss_kib"] = json!(rss);
        }
        self.json.insert("cpu".into(), cpu);
        self.rows.push(("cpu".into(), shown));
        if let Some(rss) = c.broker_rss_kib {
            self.rows
                .push(("broker memory".into(), format!("{} RSS", kib(rss))));
        }
    }

    pub fn print(&self, as_json: bool) {
        if as_json {
            let mut j = self.json.clone();
            j.insert("errors".into(), json!(self.errors));
            j.insert("notes".into(), json!(self.notes));
            j.insert("ok".into(), json!(self.errors.is_empty()));
            println!("{}", Value::Object(j));
            return;
        }
        println!("{}", self.title);
        let w = self.rows.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
        for (l, v) in &self.rows {
            println!("  {l:<w$}  {v}");
        }
        for n in &self.notes {
            println!("  note: {n}");
        }
        if self.errors.is_empty() {
            println!("  result: OK");
        } else {
            for e in &self.errors {
                println!("  ERROR: {e}");
            }
        }
    }

    pub fn result(&self) -> anyhow::Result<()> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            anyhow::bail!(
                "{} check(s) failed: {}",
                self.errors.len(),
                self.errors.join("; ")
            )
        }
    }
}

pub fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// 1234567 -> "1,234,567".
pub fn count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A rate in messages per second.
pub fn rate(r: f64) -> String {
    format!("{} msg/s", count(r.round() as u64))
}

/// Microseconds, shown in the unit that reads best.
pub fn us(v: u64) -> String {
    if v >= 10_000_000 {
        format!("{:.1} s", v as f64 / 1e6)
    } else if v >= 10_000 {
        format!("{:.1} ms", v as f64 / 1e3)
    } else {
        format!("{v} µs")
    }
}

pub fn kib(v: u64) -> String {
    if v >= 10 * 1024 {
        format!("{:.1} MiB", v as f64 / 1024.0)
    } else {
        format!("{v} KiB")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(us(950), "950 µs");
        assert_eq!(us(12_345), "12.3 ms");
        assert_eq!(rate(1234.4), "1,234 msg/s");
    }
}
