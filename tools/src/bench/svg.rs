//! The `--plot` SVG of `stoker bench --sweep-workers`.

use std::fmt::Write as _;

use super::sweep::SweepRow;

/// Escapes text for SVG.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A small SVG line chart of loader images/s against workers (one `<circle class="point">`
/// per row), with a dashed horizontal line at the step's rate when it is finite, and a second
/// line for the combined images/s when every row has one.
pub fn plot_svg(rows: &[SweepRow], step_ips: Option<f64>, title: &str) -> String {
    let (w, h) = (560.0, 340.0);
    let (left, right, top, bottom) = (64.0, 24.0, 40.0, 48.0);
    let pw = w - left - right;
    let ph = h - top - bottom;
    let max_workers = rows.iter().map(|r| r.workers).max().unwrap_or(0).max(1) as f64;
    let step_line = step_ips.filter(|s| s.is_finite() && *s > 0.0);
    let mut ymax = rows
        .iter()
        .map(|r| r.loader_ips.max(r.combined_ips.unwrap_or(0.0)))
        .fold(0.0f64, f64::max);
    if let Some(s) = step_line {
        ymax = ymax.max(s);
    }
    let ymax = nice_ceiling(ymax * 1.1);
    let x = |workers: usize| left + pw * workers as f64 / max_workers;
    let y = |v: f64| top + ph * (1.0 - (v / ymax).clamp(0.0, 1.0));
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="14">{}</text>"#,
        w / 2.0,
        esc(title)
    );
    // Axes, ticks, grid.
    let _ = writeln!(
        s,
        r#"<path d="M{left} {top} V{} H{}" fill="none" stroke="black"/>"#,
        top + ph,
        left + pw
    );
    for i in 0..=4 {
        let v = ymax * i as f64 / 4.0;
        let yy = y(v);
        let _ = writeln!(
            s,
            r##"<line x1="{left}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{v:.0}</text>"##,
            left + pw,
            left - 6.0,
            yy + 4.0
        );
    }
    for r in rows {
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            x(r.workers),
            top + ph + 18.0,
            r.workers
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">workers</text>"#,
        left + pw / 2.0,
        h - 8.0
    );
    let _ = writeln!(
        s,
        r#"<text x="14" y="{:.1}" text-anchor="middle" transform="rotate(-90 14 {:.1})">images/s</text>"#,
        top + ph / 2.0,
        top + ph / 2.0
    );
    if let Some(step) = step_line {
        let yy = y(step);
        let _ = writeln!(
            s,
            r##"<line class="step" x1="{left}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#c0392b" stroke-dasharray="6 4"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="#c0392b">GPU step: {step:.0} images/s</text>"##,
            left + pw,
            left + pw,
            yy - 6.0
        );
    }
    let points: Vec<String> = rows
        .iter()
        .map(|r| format!("{:.1},{:.1}", x(r.workers), y(r.loader_ips)))
        .collect();
    let _ = writeln!(
        s,
        r##"<polyline points="{}" fill="none" stroke="#2060c0" stroke-width="2"/>"##,
        points.join(" ")
    );
    // Loader and step together, where measured: a second line, without points.
    let combined: Vec<String> = rows
        .iter()
        .filter_map(|r| {
            r.combined_ips
                .map(|c| format!("{:.1},{:.1}", x(r.workers), y(c)))
        })
        .collect();
    let mut legend = vec![("#2060c0", "loader alone")];
    if combined.len() == rows.len() && !rows.is_empty() {
        let _ = writeln!(
            s,
            r##"<polyline class="combined" points="{}" fill="none" stroke="#27ae60" stroke-width="2"/>"##,
            combined.join(" ")
        );
        legend.push(("#27ae60", "with the step"));
    }
    for (i, (colour, label)) in legend.iter().enumerate() {
        let yy = top + 12.0 + 16.0 * i as f64;
        let _ = writeln!(
            s,
            r#"<line x1="{:.1}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="{colour}" stroke-width="2"/><text x="{:.1}" y="{:.1}">{label}</text>"#,
            left + 10.0,
            left + 30.0,
            left + 36.0,
            yy + 4.0
        );
    }
    for r in rows {
        let _ = writeln!(
            s,
            r##"<circle class="point" cx="{:.1}" cy="{:.1}" r="4" fill="#2060c0"><title>{} workers: {:.0} images/s</title></circle>"##,
            x(r.workers),
            y(r.loader_ips),
            r.workers,
            r.loader_ips
        );
    }
    s.push_str("</svg>\n");
    s
}

/// The smallest of 1, 2, 2.5 or 5 times a power of ten at or above `v` (at least 1).
fn nice_ceiling(v: f64) -> f64 {
    if !(v.is_finite() && v > 1.0) {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if m * p >= v {
            return m * p;
        }
    }
    10.0 * p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svg_has_one_point_per_row_and_the_step_line() {
        let rows: Vec<SweepRow> = (0..=3)
            .map(|w| SweepRow {
                workers: w,
                loader_ips: 100.0 * (w + 1) as f64,
                combined_ips: None,
                idle_fraction: 0.0,
            })
            .collect();
        let svg = plot_svg(&rows, Some(250.0), "a <title>");
        assert!(svg.starts_with("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches(r#"<circle class="point""#).count(), 4);
        assert_eq!(svg.matches(r#"class="step""#).count(), 1);
        assert!(svg.contains("a &lt;title&gt;"));
        assert!(!svg.contains(r#"class="combined""#));
        let with: Vec<SweepRow> = rows
            .iter()
            .map(|r| SweepRow {
                combined_ips: Some(r.loader_ips / 2.0),
                ..r.clone()
            })
            .collect();
        let svg = plot_svg(&with, Some(250.0), "t");
        assert_eq!(svg.matches(r#"class="combined""#).count(), 1);
        assert_eq!(svg.matches(r#"<circle class="point""#).count(), 4);
        // Infinite step rate (0 ms): no line.
        let svg = plot_svg(&rows, Some(f64::INFINITY), "t");
        assert_eq!(svg.matches(r#"class="step""#).count(), 0);
    }

    #[test]
    fn nice_ceilings() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(880.0), 1000.0);
        assert_eq!(nice_ceiling(1100.0), 2000.0);
        assert_eq!(nice_ceiling(2100.0), 2500.0);
        assert_eq!(nice_ceiling(3000.0), 5000.0);
    }
}
