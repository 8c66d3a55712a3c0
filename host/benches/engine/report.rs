//! The results: one table on stdout, the same rows (and details) as JSON.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::CONCURRENCY;
use crate::settings::Settings;

/// One line of the table.
#[derive(Clone, serde::Serialize)]
pub struct Row {
    pub id: String,
    pub section: String,
    pub measurement: String,
    pub value: Option<f64>,
    pub unit: String,
    pub ratio: Option<f64>,
    pub ratio_to: Option<String>,
    pub target: Option<String>,
    pub pass: Option<bool>,
    pub note: String,
}

#[derive(Default)]
pub struct Report {
    pub rows: Vec<Row>,
    pub details: BTreeMap<String, Value>,
}

impl Report {
    pub fn add(
        &mut self,
        id: &str,
        section: &str,
        measurement: &str,
        value: Option<f64>,
        unit: &str,
    ) -> &mut Row {
        self.rows.push(Row {
            id: id.into(),
            section: section.into(),
            measurement: measurement.into(),
            value,
            unit: unit.into(),
            ratio: None,
            ratio_to: None,
            target: None,
            pass: None,
            note: String::new(),
        });
        self.rows.last_mut().expect("just pushed")
    }
}

impl Row {
    pub fn ratio(&mut self, ratio: Option<f64>, to: &str) -> &mut Self {
        self.ratio = ratio;
        self.ratio_to = Some(to.into());
        self
    }

    pub fn target(&mut self, target: &str, pass: Option<bool>) -> &mut Self {
        self.target = Some(target.into());
        self.pass = pass;
        self
    }

    pub fn note(&mut self, note: impl Into<String>) -> &mut Self {
        self.note = note.into();
        self
    }
}

pub fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

fn fmt_value(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 1000.0 {
        let s = format!("{v:.0}");
        // thousands separators
        let (sign, digits) = if let Some(d) = s.strip_prefix('-') {
            ("-", d)
        } else {
            ("", s.as_str())
        };
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        format!("{sign}{out}")
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else if v.abs() >= 0.1 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

pub fn render_table(rows: &[Row]) -> String {
    let header = [
        "section",
        "measurement",
        "value",
        "unit",
        "ratio",
        "vs",
        "target",
        "ok",
        "note",
    ];
    let cells: Vec<[String; 9]> = rows
        .iter()
        .map(|r| {
            [
                r.section.clone(),
                r.measurement.clone(),
                r.value.map(fmt_value).unwrap_or_else(|| "n/a".into()),
                r.unit.clone(),
                r.ratio.map(|x| format!("{x:.2}x")).unwrap_or_default(),
                r.ratio_to.clone().unwrap_or_default(),
                r.target.clone().unwrap_or_default(),
                match r.pass {
                    Some(true) => "yes".into(),
                    Some(false) => "NO".into(),
                    None => String::new(),
                },
                r.note.clone(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cols: &[String]| -> String {
        let mut s = String::from("|");
        for (i, (c, w)) in cols.iter().zip(widths).enumerate() {
            let pad = w - c.chars().count();
            if i == 2 || i == 4 {
                s.push_str(&format!(" {}{} |", " ".repeat(pad), c));
            } else {
                s.push_str(&format!(" {}{} |", c, " ".repeat(pad)));
            }
        }
        s
    };
    let mut out = String::new();
    out.push_str(&line(&header.map(String::from)));
    out.push('\n');
    out.push('|');
    for w in widths {
        out.push_str(&format!("{}|", "-".repeat(w + 2)));
    }
    out.push('\n');
    for row in &cells {
        out.push_str(&line(row));
        out.push('\n');
    }
    out
}

pub fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

pub fn ms(d: Option<Duration>) -> Option<f64> {
    d.map(|d| d.as_secs_f64() * 1000.0)
}

pub fn mib(kib: Option<u64>) -> Option<f64> {
    kib.map(|k| k as f64 / 1024.0)
}

/// Prints the table and writes it with the details to `target/bench/engine.json` (a subset of
/// the sections goes to `engine-partial.json`, so that it does not replace the full report).
pub fn finish(settings: &Settings, report: &Report, loadavg: &str) -> anyhow::Result<()> {
    let n = settings.events;
    let table = render_table(&report.rows);
    let total = settings.started.elapsed();
    println!();
    println!(
        "wasmhook engine benchmark — {} events/run{}, {} cores, total {:.0}s, load average at start {loadavg}",
        n,
        if settings.quick { " (QUICK)" } else { "" },
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        total.as_secs_f64()
    );
    print!("{table}");
    // A subset (WASMHOOK_BENCH_ONLY / _STEPS, for profiling) must not replace the full report.
    let partial = settings.only.is_some()
        || std::env::var("WASMHOOK_BENCH_STEPS").is_ok_and(|v| !v.trim().is_empty());
    let json_path = settings.out_dir.join(if partial {
        "engine-partial.json"
    } else {
        "engine.json"
    });
    let document = json!({
        "benchmark": "wasmhook engine",
        "command": "cargo bench --bench engine",
        "events_per_run": n,
        "quick": settings.quick,
        "concurrency": CONCURRENCY,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "load_average_at_start": loadavg,
        "total_seconds": total.as_secs_f64(),
        "unix_time": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        "rows": report.rows,
        "details": report.details,
        "table": table,
    });
    std::fs::write(&json_path, serde_json::to_string_pretty(&document)?)?;
    println!("JSON: {}", json_path.display());
    Ok(())
}
