//! Results: the summary table, the JSON file scripts read, the HdrHistogram interval log
//! and the throughput–latency curve of a sweep (SVG).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime};

use hdrhistogram::Histogram;

use crate::client::Stats;

/// One measurement, as `--json` writes it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    pub url: String,
    /// `closed` (N concurrent requesters) or `open` (fixed arrival rate).
    pub mode: &'static str,
    pub connections: usize,
    /// Offered rate in requests/s (open loop).
    pub rate: Option<f64>,
    pub duration_s: f64,
    /// Correct replies.
    pub replies: u64,
    /// Correct replies per second that arrived within the measured window.
    pub throughput: f64,
    /// Requests that failed, any kind.
    pub errors: u64,
    pub errors_by_kind: BTreeMap<String, u64>,
    /// Why sampled tokens failed verification, when the run can tell: they carried no
    /// certificate and no `--untrusted` one completed the chain. Null otherwise.
    pub verification_hint: Option<String>,
    /// Latency of correct replies in µs (open loop: from the intended send time).
    pub latency_us: Latency,
    /// The whole latency distribution (for plots; not in the JSON).
    #[serde(skip)]
    pub histogram: Histogram<u64>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Latency {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p99_9: u64,
    pub max: u64,
    pub mean: f64,
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Latency {
        Latency {
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p99_9: h.value_at_quantile(0.999),
            max: h.max(),
            mean: h.mean(),
        }
    }
}

impl Summary {
    pub fn new(
        url: &str,
        connections: usize,
        rate: Option<f64>,
        duration: Duration,
        stats: &Stats,
    ) -> Summary {
        Summary {
            url: url.to_string(),
            mode: if rate.is_some() { "open" } else { "closed" },
            connections,
            rate,
            duration_s: duration.as_secs_f64(),
            replies: stats.ok,
            throughput: stats.ok_in_window as f64 / duration.as_secs_f64(),
            errors: stats.error_count(),
            errors_by_kind: stats.errors.clone(),
            verification_hint: uncertified_hint(stats.uncertified),
            latency_us: Latency::of(&stats.latency),
            histogram: stats.latency.clone(),
        }
    }
}

/// What to do about `n` sampled tokens that could not verify for want of a certificate.
fn uncertified_hint(n: u64) -> Option<String> {
    let tokens = match n {
        0 => return None,
        1 => "1 sampled token".to_string(),
        n => format!("{n} sampled tokens"),
    };
    Some(format!(
        "{tokens} carried no certificate (the requests had certReq false) and failed \
         verification: pass --untrusted TSA.pem or --cert-req 1 so they can be verified"
    ))
}

fn ms(us: u64) -> String {
    format!("{:.2} ms", us as f64 / 1000.0)
}

/// The end-of-run table.
pub fn table(s: &Summary, out: &mut dyn Write) -> std::io::Result<()> {
    let offered = s
        .rate
        .map(|r| format!(", offered {r:.0}/s (open loop)"))
        .unwrap_or_else(|| " (closed loop)".into());
    writeln!(
        out,
        "\n{} connections{offered}, {:.1} s measured",
        s.connections, s.duration_s
    )?;
    writeln!(
        out,
        "{:>12} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "replies/s", "p50", "p90", "p99", "p99.9", "max", "errors"
    )?;
    let l = &s.latency_us;
    writeln!(
        out,
        "{:>12.0} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
        s.throughput,
        ms(l.p50),
        ms(l.p90),
        ms(l.p99),
        ms(l.p99_9),
        ms(l.max),
        s.errors
    )?;
    for (kind, n) in &s.errors_by_kind {
        writeln!(out, "  error {kind}: {n}")?;
    }
    if let Some(hint) = &s.verification_hint {
        writeln!(out, "  note: {hint}")?;
    }
    Ok(())
}

pub fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<(), String> {
    let text = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
    std::fs::write(path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))
}

/// The per-second histograms as an HdrHistogram interval log (V2 encoding), readable by
/// HdrHistogram's log tools (HistogramLogAnalyzer, hdr-plot).
pub fn write_hdr_log(path: &Path, started: SystemTime, stats: &Stats) -> Result<(), String> {
    use hdrhistogram::serialization::interval_log::IntervalLogWriterBuilder;
    use hdrhistogram::serialization::V2Serializer;
    let mut file = Vec::new();
    let mut serializer = V2Serializer::new();
    {
        let mut log = IntervalLogWriterBuilder::new()
            .add_comment("stampd-loadtest latency, microseconds")
            .with_start_time(started)
            .with_base_time(started)
            .with_max_value_divisor(1000.0)
            .begin_log_with(&mut file, &mut serializer)
            .map_err(|e| e.to_string())?;
        for (i, h) in stats.intervals.iter().enumerate() {
            log.write_histogram(
                h,
                Duration::from_secs(i as u64),
                Duration::from_secs(1),
                None,
            )
            .map_err(|e| format!("{e:?}"))?;
        }
    }
    std::fs::write(path, file).map_err(|e| format!("{}: {e}", path.display()))
}

/// The plots' frame: size and margins (left, right, top, bottom), in SVG units.
const W: f64 = 720.0;
const H: f64 = 440.0;
const L: f64 = 70.0;
const R: f64 = 20.0;
const T: f64 = 40.0;
const B: f64 = 50.0;

/// An SVG document with a white background and `title`.
fn svg_open(title: &str) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"14\">{}</text>\n",
        W / 2.0,
        escape(title)
    )
}

/// A horizontal grid line at `y`, labelled on the left.
fn h_grid(y: f64, label: &str) -> String {
    format!(
        "<line x1=\"{L}\" y1=\"{y:.1}\" x2=\"{}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>\
         <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{label}</text>\n",
        W - R,
        L - 6.0,
        y + 4.0
    )
}

/// A vertical grid line at `x`, labelled below the plot.
fn v_grid(x: f64, label: &str) -> String {
    format!(
        "<line x1=\"{x:.1}\" y1=\"{T}\" x2=\"{x:.1}\" y2=\"{}\" stroke=\"#eee\"/>\
         <text x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\">{label}</text>\n",
        H - B,
        H - B + 16.0
    )
}

/// The x axis's title, under the plot.
fn x_title(text: &str) -> String {
    format!(
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{text}</text>\n",
        (L + W - R) / 2.0,
        H - 12.0
    )
}

/// The throughput–latency curve of a sweep as SVG: x = correct replies/s, y = latency
/// (log scale), one line per percentile.
pub fn sweep_svg(points: &[Summary], title: &str) -> String {
    let max_x = points.iter().map(|p| p.throughput).fold(1.0, f64::max) * 1.05;
    let lat = |p: &Summary| [p.latency_us.p50, p.latency_us.p99, p.latency_us.p99_9];
    let lo = points.iter().flat_map(lat).min().unwrap_or(1).max(1) as f64;
    let hi = points.iter().flat_map(lat).max().unwrap_or(10).max(10) as f64;
    let (y0, y1) = (
        lo.log10().floor(),
        hi.log10().ceil().max(lo.log10().floor() + 1.0),
    );
    let px = |x: f64| L + (W - L - R) * x / max_x;
    let py = |us: f64| T + (H - T - B) * (1.0 - (us.max(1.0).log10() - y0) / (y1 - y0));
    let mut svg = svg_open(title);
    // Axes and grid: decades of latency, fifths of throughput.
    let mut decade = y0;
    while decade <= y1 {
        let y = py(10f64.powf(decade));
        let label = match 10f64.powf(decade) {
            v if v >= 1000.0 => format!("{} ms", v / 1000.0),
            v => format!("{v} µs"),
        };
        svg += &h_grid(y, &label);
        decade += 1.0;
    }
    for i in 0..=5 {
        let v = max_x * f64::from(i) / 5.0;
        svg += &v_grid(px(v), &format!("{v:.0}"));
    }
    svg += &x_title("correct replies/s");
    svg += &format!(
        "<text x=\"16\" y=\"{}\" transform=\"rotate(-90 16 {})\" text-anchor=\"middle\">latency (log)</text>\n",
        (T + H - B) / 2.0,
        (T + H - B) / 2.0
    );
    for (i, (name, colour)) in [("p50", "#1f77b4"), ("p99", "#ff7f0e"), ("p99.9", "#d62728")]
        .iter()
        .enumerate()
    {
        let path: Vec<String> = points
            .iter()
            .map(|p| format!("{:.1},{:.1}", px(p.throughput), py(lat(p)[i] as f64)))
            .collect();
        svg += &format!(
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>\n",
            path.join(" ")
        );
        for pt in &path {
            let (x, y) = pt.split_once(',').unwrap_or(("0", "0"));
            svg += &format!("<circle cx=\"{x}\" cy=\"{y}\" r=\"3\" fill=\"{colour}\"/>\n");
        }
        let ly = T + 14.0 + 16.0 * i as f64;
        svg += &format!(
            "<line x1=\"{}\" y1=\"{ly}\" x2=\"{}\" y2=\"{ly}\" stroke=\"{colour}\" stroke-width=\"2\"/>\
             <text x=\"{}\" y=\"{}\">{name}</text>\n",
            L + 10.0,
            L + 30.0,
            L + 36.0,
            ly + 4.0
        );
    }
    svg + "</svg>\n"
}

/// The latency distribution of one run as SVG, HdrHistogram style: x = percentile on a
/// scale that spreads the tail (0, 90, 99, 99.9, 99.99 %), y = latency.
pub fn percentile_svg(h: &Histogram<u64>, title: &str) -> String {
    // x: log10(1 / (1 - q)), so each "nine" gets the same width; up to 99.999%.
    const NINES: f64 = 5.0;
    let x_of = |q: f64| (1.0 / (1.0 - q.min(0.99999))).log10();
    let max_y = (h.max().max(1) as f64) * 1.05;
    let px = |x: f64| L + (W - L - R) * x / NINES;
    let py = |us: f64| T + (H - T - B) * (1.0 - us / max_y);
    let mut svg = svg_open(title);
    for (i, label) in ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"]
        .iter()
        .enumerate()
    {
        svg += &v_grid(px(i as f64), label);
    }
    for i in 0..=4 {
        let us = max_y * f64::from(i) / 4.0;
        svg += &h_grid(py(us), &format!("{:.2} ms", us / 1000.0));
    }
    svg += &x_title("percentile");
    let points: Vec<String> = h
        .iter_quantiles(4)
        .map(|v| {
            let q = v.quantile_iterated_to();
            format!("{:.1},{:.1}", px(x_of(q)), py(v.value_iterated_to() as f64))
        })
        .collect();
    svg += &format!(
        "<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"2\" points=\"{}\"/>\n",
        points.join(" ")
    );
    svg + "</svg>\n"
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(throughput: f64, p50: u64, p99: u64) -> Summary {
        Summary {
            url: "http://x/tsa".into(),
            mode: "open",
            connections: 1,
            rate: Some(throughput),
            duration_s: 1.0,
            replies: throughput as u64,
            throughput,
            errors: 0,
            errors_by_kind: BTreeMap::new(),
            verification_hint: None,
            latency_us: Latency {
                p50,
                p90: p99,
                p99,
                p99_9: p99 * 2,
                max: p99 * 3,
                mean: p50 as f64,
            },
            histogram: crate::client::histogram(),
        }
    }

    #[test]
    fn the_table_explains_tokens_without_a_certificate_once() {
        let table_of = |s: &Summary| {
            let mut out = Vec::new();
            table(s, &mut out).unwrap();
            String::from_utf8(out).unwrap()
        };
        let mut s = point(10.0, 90, 400);
        assert!(uncertified_hint(0).is_none());
        assert!(!table_of(&s).contains("note:"));
        s.verification_hint = uncertified_hint(1);
        let hint = s.verification_hint.clone().unwrap();
        assert!(
            hint.starts_with("1 sampled token carried no certificate"),
            "{hint}"
        );
        s.verification_hint = uncertified_hint(7);
        let hint = s.verification_hint.clone().unwrap();
        assert!(
            hint.starts_with("7 sampled tokens carried no certificate")
                && hint.contains("--untrusted TSA.pem or --cert-req 1"),
            "{hint}"
        );
        assert_eq!(table_of(&s).matches(&hint).count(), 1);
    }

    #[test]
    fn the_percentile_plot_runs_from_the_median_to_the_tail() {
        let mut h = crate::client::histogram();
        for v in 1..=10_000u64 {
            h.record(v).unwrap();
        }
        let svg = percentile_svg(&h, "run");
        assert_eq!(svg.matches("<polyline").count(), 1);
        assert!(svg.contains("99.9%") && svg.contains("ms</text>"));
        let points = svg
            .split("points=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        assert!(points.split(' ').count() > 10, "{points}");
    }

    #[test]
    fn the_sweep_plot_has_a_line_per_percentile_and_every_point() {
        let svg = sweep_svg(&[point(100.0, 90, 400), point(1000.0, 120, 2_000)], "a <b>");
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 3);
        assert_eq!(svg.matches("<circle").count(), 6);
        assert!(svg.contains("a &lt;b&gt;"));
        assert!(svg.contains("1 ms"), "decade labels");
    }
}
