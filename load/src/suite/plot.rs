//! The suite's SVG plots (plotters' SVG backend, no fonts needed).

use std::path::{Path, PathBuf};

use plotters::prelude::*;

use super::RowResult;
use super::plan::{ROOM_SIZES, Work};
use super::stats::Spread;
use crate::error::LoadError;

const SIZE: (u32, u32) = (720, 420);

/// A colour per server label, stable across plots.
fn colour(server: &str) -> RGBColor {
    match server {
        "chatgate tcp" => RGBColor(0x1f, 0x77, 0xb4),
        "nats-server" => RGBColor(0xd6, 0x27, 0x28),
        "chatgate ws" => RGBColor(0x2c, 0xa0, 0x2c),
        "chatgate tls" => RGBColor(0xff, 0x7f, 0x0e),
        _ => RGBColor(0x94, 0x67, 0xbd),
    }
}

fn plot_error(e: impl std::fmt::Display) -> LoadError {
    LoadError::Scenario(format!("plot: {e}"))
}

fn median(row: &RowResult, f: impl Fn(&crate::report::Report) -> Option<f64>) -> Option<f64> {
    Spread::of(row.reports.iter().filter_map(f)).map(|s| s.median)
}

fn servers(results: &[RowResult]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in results {
        if !out.contains(&r.server) {
            out.push(r.server.clone());
        }
    }
    out
}

/// Draws one plot into a file; `false` when there was nothing to draw.
type Draw = fn(&Path, &[RowResult]) -> Result<bool, LoadError>;

/// Draws every plot that has data into `dir`; returns titles and file names.
pub fn draw_all(dir: &Path, results: &[RowResult]) -> Result<Vec<(String, PathBuf)>, LoadError> {
    let mut out = Vec::new();
    let plots: [(&str, &str, Draw); 3] = [
        (
            "Delivered msgs/s against room size",
            "rate-vs-room-size.svg",
            rate_vs_room_size,
        ),
        (
            "p99 latency against offered load, 1 room of 100",
            "p99-vs-load.svg",
            p99_vs_load,
        ),
        (
            "Server RSS per idle connection",
            "rss-per-connection.svg",
            rss_per_connection,
        ),
    ];
    for (title, file, draw) in plots {
        if draw(&dir.join(file), results)? {
            out.push((title.to_owned(), PathBuf::from(file)));
        }
    }
    Ok(out)
}

/// One line per server through (x, y) points.
fn lines(
    path: &Path,
    caption: &str,
    (x_desc, y_desc): (&str, &str),
    series: &[(String, Vec<(f64, f64)>)],
) -> Result<bool, LoadError> {
    let points = series.iter().flat_map(|(_, p)| p.iter());
    let (mut x_max, mut y_max, mut x_min) = (1.0f64, 1.0f64, f64::MAX);
    for &(x, y) in points {
        x_max = x_max.max(x);
        x_min = x_min.min(x);
        y_max = y_max.max(y);
    }
    if series.iter().all(|(_, p)| p.is_empty()) {
        return Ok(false);
    }
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(
            (x_min.max(1.0) * 0.8..x_max * 1.25).log_scale(),
            0.0..y_max * 1.15,
        )
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .y_label_formatter(&|v| format!("{v:.3e}"))
        .x_label_formatter(&|v| format!("{v:.0}"))
        .draw()
        .map_err(plot_error)?;
    for (server, points) in series {
        let c = colour(server);
        chart
            .draw_series(LineSeries::new(points.iter().copied(), c.stroke_width(2)))
            .map_err(plot_error)?
            .label(server.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        chart
            .draw_series(points.iter().map(|&p| Circle::new(p, 3, c.filled())))
            .map_err(plot_error)?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE)
        .border_style(BLACK)
        .draw()
        .map_err(plot_error)?;
    root.present().map_err(plot_error)?;
    Ok(true)
}

fn rate_vs_room_size(path: &Path, results: &[RowResult]) -> Result<bool, LoadError> {
    let series: Vec<_> = servers(results)
        .into_iter()
        .map(|server| {
            let points = ROOM_SIZES
                .iter()
                .filter_map(|&users| {
                    let row = results
                        .iter()
                        .find(|r| r.server == server && r.id == format!("fanout-1x{users}"))?;
                    Some((users as f64, median(row, |r| Some(r.delivered_per_s))?))
                })
                .collect::<Vec<_>>();
            (server, points)
        })
        .filter(|(_, p)| p.len() > 1)
        .collect();
    lines(
        path,
        "Delivered msgs/s, 1 room, 1 sender, 64 B, max rate",
        ("room size (members)", "delivered msgs/s"),
        &series,
    )
}

fn p99_vs_load(path: &Path, results: &[RowResult]) -> Result<bool, LoadError> {
    let series: Vec<_> = servers(results)
        .into_iter()
        .map(|server| {
            let mut points: Vec<(f64, f64)> = results
                .iter()
                .filter(|r| r.server == server && r.id.starts_with("latency-"))
                .filter(|r| matches!(r.plan.as_ref().map(|p| p.work), Some(Work::Fanout(s)) if s.users == 100))
                .filter_map(|row| {
                    let offered = median(row, |r| Some(r.delivered_per_s))?;
                    Some((offered, median(row, |r| Some(r.latency.p99_us))?))
                })
                .collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            (server, points)
        })
        .filter(|(_, p)| p.len() > 1)
        .collect();
    lines(
        path,
        "p99 latency, 1 room of 100",
        ("delivered msgs/s", "p99 latency, µs"),
        &series,
    )
}

fn rss_per_connection(path: &Path, results: &[RowResult]) -> Result<bool, LoadError> {
    let bars: Vec<(String, f64)> = results
        .iter()
        .filter(|r| r.id == "idle")
        .filter_map(|row| {
            let kib = median(row, |r| Some(r.memory?.per_connection_bytes? / 1024.0))?;
            Some((row.server.clone(), kib))
        })
        .collect();
    if bars.is_empty() {
        return Ok(false);
    }
    let y_max = bars.iter().map(|(_, v)| *v).fold(1.0, f64::max) * 1.25;
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Server RSS per idle joined connection, KiB",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(20)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..bars.len() as f64, 0.0..y_max)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc("KiB per connection")
        .draw()
        .map_err(plot_error)?;
    for (i, (server, kib)) in bars.iter().enumerate() {
        let x = i as f64;
        let c = colour(server);
        chart
            .draw_series([Rectangle::new(
                [(x + 0.15, 0.0), (x + 0.85, *kib)],
                c.filled(),
            )])
            .map_err(plot_error)?;
        chart
            .draw_series([Text::new(
                format!("{server}: {kib:.1}"),
                (x + 0.15, *kib + y_max * 0.03),
                ("sans-serif", 14),
            )])
            .map_err(plot_error)?;
    }
    root.present().map_err(plot_error)?;
    Ok(true)
}
