//! `--plot FILE.svg`: throughput over time (one line per op, plus the total) and the latency
//! distribution (percentile curves from the HDR histograms, log-scaled latency), written as
//! plain SVG so it opens in any browser without a plotting dependency.

use std::fmt::Write;

use crate::report::Report;
use crate::stats::Op;

const W: f64 = 900.0;
const H: f64 = 320.0;
const PAD: f64 = 60.0;
const COLORS: [&str; 10] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];

/// Renders the report as an SVG document.
pub fn svg(r: &Report) -> String {
    let mut s = String::new();
    let total_h = 2.0 * H + 60.0;
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{total_h}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let title = format!(
        "{} {} vs {} — {} clients, {} users, {:.0} cmd/s, {} violations",
        r.info.workload,
        r.info.variant,
        r.info.server,
        r.info.clients,
        r.info.users,
        r.total_per_sec,
        r.violation_count
    );
    let _ = writeln!(
        s,
        r#"<text x="{PAD}" y="20" font-size="14">{}</text>"#,
        esc(&title)
    );
    throughput(&mut s, r, 40.0);
    latency(&mut s, r, 40.0 + H + 20.0);
    s.push_str("</svg>\n");
    s
}

fn esc(t: &str) -> String {
    t.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn frame(s: &mut String, top: f64, title: &str, x_label: &str, y_label: &str) {
    let (x0, y0, x1, y1) = (PAD, top + 20.0, W - 150.0, top + H - 30.0);
    let _ = writeln!(
        s,
        r##"<rect x="{x0}" y="{y0}" width="{}" height="{}" fill="none" stroke="#333"/>"##,
        x1 - x0,
        y1 - y0
    );
    let _ = writeln!(
        s,
        r#"<text x="{x0}" y="{}" font-size="13">{}</text>"#,
        top + 14.0,
        esc(title)
    );
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
        (x0 + x1) / 2.0,
        y1 + 28.0,
        esc(x_label)
    );
    let _ = writeln!(
        s,
        r#"<text x="14" y="{}" transform="rotate(-90 14 {})" text-anchor="middle">{}</text>"#,
        (y0 + y1) / 2.0,
        (y0 + y1) / 2.0,
        esc(y_label)
    );
}

fn legend(s: &mut String, top: f64, i: usize, name: &str, color: &str) {
    let y = top + 30.0 + i as f64 * 16.0;
    let x = W - 140.0;
    let _ = writeln!(
        s,
        r#"<line x1="{x}" y1="{y}" x2="{}" y2="{y}" stroke="{color}" stroke-width="2"/>"#,
        x + 18.0
    );
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}">{}</text>"#,
        x + 24.0,
        y + 4.0,
        esc(name)
    );
}

fn throughput(s: &mut String, r: &Report, top: f64) {
    frame(
        s,
        top,
        "throughput (commands per second)",
        "seconds",
        "per second",
    );
    let (x0, y0, x1, y1) = (PAD, top + 20.0, W - 150.0, top + H - 30.0);
    let secs = r.per_second.len().max(1);
    let total: Vec<u64> = r
        .per_second
        .iter()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| **k != "notify")
                .map(|(_, v)| v)
                .sum()
        })
        .collect();
    let ymax = total.iter().copied().max().unwrap_or(1).max(1) as f64;
    axis_ticks(s, x0, y0, x1, y1, secs as f64, ymax);
    let mut series: Vec<(String, Vec<u64>)> = vec![("total".into(), total)];
    for op in Op::ALL {
        let v: Vec<u64> = r
            .per_second
            .iter()
            .map(|m| m.get(op.name()).copied().unwrap_or(0))
            .collect();
        if v.iter().any(|&x| x > 0) {
            series.push((op.name().into(), v));
        }
    }
    for (i, (name, v)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let pts: Vec<String> = v
            .iter()
            .enumerate()
            .map(|(t, &c)| {
                let x = x0 + (t as f64 + 0.5) / secs as f64 * (x1 - x0);
                let y = y1 - c as f64 / ymax * (y1 - y0);
                format!("{x:.1},{y:.1}")
            })
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{}"/>"#,
            pts.join(" ")
        );
        legend(s, top, i, name, color);
    }
}

fn axis_ticks(s: &mut String, x0: f64, y0: f64, x1: f64, y1: f64, xmax: f64, ymax: f64) {
    for k in 0..=4 {
        let f = k as f64 / 4.0;
        let y = y1 - f * (y1 - y0);
        let _ = writeln!(
            s,
            r##"<line x1="{x0}" y1="{y:.1}" x2="{x1}" y2="{y:.1}" stroke="#ddd"/>"##
        );
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{:.1}" text-anchor="end">{:.0}</text>"#,
            x0 - 4.0,
            y + 4.0,
            f * ymax
        );
        let x = x0 + f * (x1 - x0);
        let _ = writeln!(
            s,
            r#"<text x="{x:.1}" y="{}" text-anchor="middle">{:.0}</text>"#,
            y1 + 14.0,
            f * xmax
        );
    }
}

/// Latency percentile curves: x = percentile on a "nines" scale (0, 90, 99, 99.9, ...),
/// y = latency on a log scale — the usual HDR histogram view.
fn latency(s: &mut String, r: &Report, top: f64) {
    frame(
        s,
        top,
        "latency distribution",
        "percentile",
        "latency (ms, log)",
    );
    let (x0, y0, x1, y1) = (PAD, top + 20.0, W - 150.0, top + H - 30.0);
    let max_us = r
        .hist
        .values()
        .map(|h| h.max())
        .max()
        .unwrap_or(1000)
        .max(10) as f64;
    let min_us = r.hist.values().map(|h| h.min()).min().unwrap_or(1).max(1) as f64;
    let (lmin, lmax) = (
        min_us.log10().floor(),
        max_us.log10().ceil().max(min_us.log10().floor() + 1.0),
    );
    let nines = 4.0; // up to 99.99th
    let xpos = |q: f64| x0 + ((-(1.0 - q).max(1e-4).log10()) / nines) * (x1 - x0);
    let ypos = |us: f64| y1 - ((us.max(1.0).log10() - lmin) / (lmax - lmin)) * (y1 - y0);
    for (k, label) in ["0", "90", "99", "99.9", "99.99"].iter().enumerate() {
        let x = x0 + k as f64 / nines * (x1 - x0);
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{y0}" x2="{x:.1}" y2="{y1}" stroke="#ddd"/>"##
        );
        let _ = writeln!(
            s,
            r#"<text x="{x:.1}" y="{}" text-anchor="middle">{label}</text>"#,
            y1 + 14.0
        );
    }
    let mut e = lmin;
    while e <= lmax {
        let y = ypos(10f64.powf(e));
        let _ = writeln!(
            s,
            r##"<line x1="{x0}" y1="{y:.1}" x2="{x1}" y2="{y:.1}" stroke="#ddd"/>"##
        );
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
            x0 - 4.0,
            y + 4.0,
            10f64.powf(e) / 1000.0
        );
        e += 1.0;
    }
    for (i, (op, h)) in r.hist.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        // 200 points spread evenly on the nines scale.
        let pts: Vec<String> = (0..=200)
            .map(|k| {
                let q = 1.0 - 10f64.powf(-(k as f64 / 200.0 * nines));
                format!("{:.1},{:.1}", xpos(q), ypos(h.value_at_quantile(q) as f64))
            })
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{}"/>"#,
            pts.join(" ")
        );
        legend(s, top, i, op.name(), color);
    }
}
