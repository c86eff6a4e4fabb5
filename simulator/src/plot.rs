//! Plots as hand-written SVG: line charts (completion CDFs, uplink use
//! over time) and bar charts (bytes over the uplinks per strategy).

use std::fmt::Write as _;

const W: f64 = 720.0;
const H: f64 = 420.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 170.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 55.0;
const COLOURS: [&str; 8] = [
    "#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn nice_step(span: f64) -> f64 {
    let raw = span / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let step = if norm < 1.5 {
        1.0
    } else if norm < 3.5 {
        2.0
    } else if norm < 7.5 {
        5.0
    } else {
        10.0
    };
    step * mag
}

/// The horizontal axis: linear from 0, or logarithmic between two powers
/// of ten (for completion times that span orders of magnitude).
#[derive(Clone, Copy, Debug)]
struct XAxis {
    log: bool,
    min: f64,
    max: f64,
}

impl XAxis {
    /// Where `x` falls, as a fraction of the plot's width.
    fn frac(&self, x: f64) -> f64 {
        if self.log {
            let (a, b) = (self.min.log10(), self.max.log10());
            ((x.max(self.min).log10() - a) / (b - a)).clamp(0.0, 1.0)
        } else {
            x / self.max
        }
    }

    fn ticks(&self) -> Vec<f64> {
        if self.log {
            let mut v = self.min;
            let mut out = Vec::new();
            while v <= self.max * 1.0001 {
                out.push(v);
                v *= 10.0;
            }
            return out;
        }
        let step = nice_step(self.max);
        (0..)
            .map(|k| k as f64 * step)
            .take_while(|v| *v <= self.max * 1.0001)
            .collect()
    }
}

fn frame(out: &mut String, title: &str, xlabel: &str, ylabel: &str, x: XAxis, ymax: f64) {
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">
<rect width="{W}" height="{H}" fill="white"/>
<text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>
<text x="{}" y="{}" text-anchor="middle">{}</text>
<text transform="translate(16,{}) rotate(-90)" text-anchor="middle">{}</text>
"#,
        LEFT + pw / 2.0,
        esc(title),
        LEFT + pw / 2.0,
        H - 12.0,
        esc(xlabel),
        TOP + ph / 2.0,
        esc(ylabel)
    );
    for v in x.ticks() {
        let px = LEFT + x.frac(v) * pw;
        let _ = writeln!(
            out,
            r##"<line x1="{px:.1}" y1="{TOP}" x2="{px:.1}" y2="{:.1}" stroke="#eee"/><text x="{px:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            TOP + ph,
            TOP + ph + 16.0,
            fmt_tick(v)
        );
    }
    let step = nice_step(ymax);
    let mut v = 0.0;
    while v <= ymax * 1.0001 {
        let y = TOP + ph - v / ymax * ph;
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#eee"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + pw,
            LEFT - 6.0,
            y + 4.0,
            fmt_tick(v)
        );
        v += step;
    }
    let _ = writeln!(
        out,
        r##"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>"##
    );
}

fn fmt_tick(v: f64) -> String {
    if v >= 100.0 || v == v.round() {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// A line chart; each series is `(name, points)`.
pub fn lines(
    title: &str,
    xlabel: &str,
    ylabel: &str,
    series: &[(String, Vec<(f64, f64)>)],
) -> String {
    let xmax = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|q| q.0))
        .fold(0.0, f64::max)
        .max(1e-9);
    let x = XAxis {
        log: false,
        min: 0.0,
        max: xmax,
    };
    chart(title, xlabel, ylabel, x, series)
}

fn chart(
    title: &str,
    xlabel: &str,
    ylabel: &str,
    x: XAxis,
    series: &[(String, Vec<(f64, f64)>)],
) -> String {
    let ymax = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|q| q.1))
        .fold(0.0, f64::max)
        .max(1e-9)
        * 1.05;
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let mut out = String::new();
    frame(&mut out, title, xlabel, ylabel, x, ymax);
    for (i, (name, pts)) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let path: Vec<String> = pts
            .iter()
            .map(|&(px, py)| {
                format!(
                    "{:.1},{:.1}",
                    LEFT + x.frac(px) * pw,
                    TOP + ph - py / ymax * ph
                )
            })
            .collect();
        let _ = writeln!(
            out,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
            path.join(" ")
        );
        let ly = TOP + 14.0 + i as f64 * 18.0;
        let _ = writeln!(
            out,
            r#"<line x1="{:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{colour}" stroke-width="3"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            W - RIGHT + 12.0,
            W - RIGHT + 32.0,
            W - RIGHT + 38.0,
            ly + 4.0,
            esc(name)
        );
    }
    out.push_str("</svg>\n");
    out
}

/// Completion-time CDFs: `(name, sorted completion times in s, devices)`.
/// Times spanning more than a factor of 20 get a logarithmic time axis.
pub fn cdf(title: &str, series: &[(String, Vec<f64>, usize)]) -> String {
    let times = || series.iter().flat_map(|s| s.1.iter().copied());
    let (lo, hi) = (
        times().filter(|t| *t > 0.0).fold(f64::INFINITY, f64::min),
        times().fold(0.0, f64::max),
    );
    let log = lo.is_finite() && hi / lo > 20.0;
    let x = if log {
        XAxis {
            log,
            min: 10f64.powf(lo.log10().floor()),
            max: 10f64.powf(hi.log10().ceil()),
        }
    } else {
        XAxis {
            log,
            min: 0.0,
            max: hi.max(1e-9),
        }
    };
    let lines_: Vec<(String, Vec<(f64, f64)>)> = series
        .iter()
        .map(|(name, times, n)| {
            let mut pts = vec![(x.min, 0.0)];
            for (i, t) in times.iter().enumerate() {
                pts.push((*t, i as f64 / (*n).max(1) as f64));
                pts.push((*t, (i + 1) as f64 / (*n).max(1) as f64));
            }
            (name.clone(), pts)
        })
        .collect();
    let xlabel = if log {
        "time (s, log scale)"
    } else {
        "time (s)"
    };
    chart(title, xlabel, "devices done (fraction)", x, &lines_)
}

/// A bar chart of `(label, value)`.
pub fn bars(title: &str, ylabel: &str, bars: &[(String, f64)]) -> String {
    let bars: Vec<ErrorBar> = bars
        .iter()
        .map(|(label, value)| ErrorBar {
            label: label.clone(),
            value: *value,
            interval: None,
        })
        .collect();
    bars_with_errors(title, ylabel, &bars)
}

/// One bar of [`bars_with_errors`]: a value and its interval `(lo, hi)`.
#[derive(Clone, Debug, PartialEq)]
pub struct ErrorBar {
    pub label: String,
    pub value: f64,
    pub interval: Option<(f64, f64)>,
}

/// A bar chart with each bar's interval drawn as an error bar (whiskers
/// from `lo` to `hi`).
pub fn bars_with_errors(title: &str, ylabel: &str, bars: &[ErrorBar]) -> String {
    let top = bars
        .iter()
        .map(|b| b.interval.map_or(b.value, |(_, hi)| hi.max(b.value)))
        .fold(0.0, f64::max);
    let ymax = top.max(1e-9) * 1.1;
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let mut out = String::new();
    let x = XAxis {
        log: false,
        min: 0.0,
        max: 1.0,
    };
    frame(&mut out, title, "", ylabel, x, ymax);
    let slot = pw / bars.len().max(1) as f64;
    let y = |v: f64| TOP + ph - (v.max(0.0) / ymax * ph);
    for (i, b) in bars.iter().enumerate() {
        let (label, v, ci) = (&b.label, &b.value, &b.interval);
        let x = LEFT + i as f64 * slot + slot * 0.2;
        let mid = x + slot * 0.3;
        let _ = writeln!(
            out,
            r#"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}"/><text x="{mid:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            y(*v),
            slot * 0.6,
            TOP + ph - y(*v),
            COLOURS[i % COLOURS.len()],
            TOP + ph + 30.0,
            esc(label),
        );
        let label_y = match ci {
            Some((lo, hi)) => {
                let w = slot * 0.12;
                let _ = writeln!(
                    out,
                    r#"<path d="M{mid:.1} {:.1}V{:.1}M{:.1} {:.1}H{:.1}M{:.1} {:.1}H{:.1}" stroke="black" stroke-width="1.5" fill="none"/>"#,
                    y(*lo),
                    y(*hi),
                    mid - w,
                    y(*lo),
                    mid + w,
                    mid - w,
                    y(*hi),
                    mid + w
                );
                y(*hi)
            }
            None => y(*v),
        };
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="start">{}</text>"#,
            mid + slot * 0.14,
            label_y - 5.0,
            fmt_tick(*v)
        );
    }
    out.push_str("</svg>\n");
    out
}
