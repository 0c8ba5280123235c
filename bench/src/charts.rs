//! SVG charts of a comparison group: deliveries per second and p99 latency against the
//! offered load, one line per server. Whatever series a run produced are drawn, so a
//! new mode (say, batched clients) shows up as one more line without touching this.

use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::{Path, PathBuf};

/// One rate's medians for a server.
pub struct Point {
    /// Offered deliveries per second (msgs/s x sessions).
    pub offered: f64,
    pub delivered: f64,
    pub p99_ms: f64,
}

pub struct Series {
    pub name: String,
    pub points: Vec<Point>,
}

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// Thousands as `k`, millions as `M`, for axis labels.
fn short(x: f64) -> String {
    match x.abs() {
        a if a >= 1e6 => format!("{:.1}M", x / 1e6),
        a if a >= 1e3 => format!("{:.0}k", x / 1e3),
        _ => format!("{x:.0}"),
    }
}

fn ms_label(x: f64) -> String {
    if x >= 1000.0 {
        format!("{:.0} s", x / 1000.0)
    } else if x >= 1.0 {
        format!("{x:.0} ms")
    } else {
        format!("{x:.1} ms")
    }
}

fn err(e: impl std::fmt::Display) -> String {
    format!("chart: {e}")
}

/// Draws `{dir}/{name}.svg` (the two charts side by side); returns the files written.
pub fn draw(
    dir: &Path,
    name: &str,
    title: &str,
    series: &[Series],
) -> Result<Vec<PathBuf>, String> {
    if series.iter().all(|s| s.points.is_empty()) {
        return Ok(Vec::new());
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join(format!("{name}.svg"));
    {
        let root = SVGBackend::new(&path, (1100, 440)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let root = root.titled(title, ("sans-serif", 20)).map_err(err)?;
        let (left, right) = root.split_horizontally(550);
        deliveries(&left, series)?;
        p99(&right, series)?;
        root.present().map_err(err)?;
    }
    Ok(vec![path])
}

fn max_of(series: &[Series], pick: fn(&Point) -> f64) -> f64 {
    series
        .iter()
        .flat_map(|s| s.points.iter().map(pick))
        .filter(|x| x.is_finite())
        .fold(0.0, f64::max)
}

fn deliveries(area: &DrawingArea<SVGBackend, Shift>, series: &[Series]) -> Result<(), String> {
    let x_max = max_of(series, |p| p.offered) * 1.05;
    let y_max = x_max.max(max_of(series, |p| p.delivered) * 1.05);
    let mut chart = ChartBuilder::on(area)
        .caption("deliveries/s against offered load", ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..x_max, 0f64..y_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("offered deliveries/s")
        .y_desc("deliveries/s")
        .x_label_formatter(&|x| short(*x))
        .y_label_formatter(&|y| short(*y))
        .light_line_style(RGBColor(242, 242, 242))
        .draw()
        .map_err(err)?;
    // What a server that keeps up delivers.
    let grey = RGBColor(170, 170, 170);
    chart
        .draw_series(LineSeries::new(
            [(0.0, 0.0), (x_max, x_max)],
            grey.stroke_width(1),
        ))
        .map_err(err)?
        .label("offered")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], grey));
    for (i, s) in series.iter().enumerate() {
        let points: Vec<(f64, f64)> = s
            .points
            .iter()
            .filter(|p| p.delivered.is_finite())
            .map(|p| (p.offered, p.delivered))
            .collect();
        line(&mut chart, &s.name, i, points)?;
    }
    legend(&mut chart)
}

fn p99(area: &DrawingArea<SVGBackend, Shift>, series: &[Series]) -> Result<(), String> {
    let x_max = max_of(series, |p| p.offered) * 1.05;
    let y_max = (max_of(series, |p| p.p99_ms) * 1.5).max(10.0);
    let y_min = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.p99_ms))
        .filter(|x| x.is_finite() && *x > 0.0)
        .fold(f64::INFINITY, f64::min)
        .min(1.0)
        * 0.8;
    let mut chart = ChartBuilder::on(area)
        .caption("p99 latency against offered load (log)", ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..x_max, (y_min..y_max).log_scale())
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("offered deliveries/s")
        .y_desc("p99")
        .x_label_formatter(&|x| short(*x))
        .y_label_formatter(&|y| ms_label(*y))
        .light_line_style(RGBColor(242, 242, 242))
        .draw()
        .map_err(err)?;
    for (i, s) in series.iter().enumerate() {
        let points: Vec<(f64, f64)> = s
            .points
            .iter()
            .filter(|p| p.p99_ms.is_finite() && p.p99_ms > 0.0)
            .map(|p| (p.offered, p.p99_ms))
            .collect();
        line(&mut chart, &s.name, i, points)?;
    }
    legend(&mut chart)
}

/// Series `i`'s line. Earlier series are drawn wider, so a later one with the same
/// figures (a server that keeps up, like another) shows on top of it, not instead.
fn line<'a, X, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>,
    name: &str,
    i: usize,
    points: Vec<(f64, f64)>,
) -> Result<(), String>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    let color = COLORS[i % COLORS.len()];
    let width = 5u32.saturating_sub(i as u32).max(2);
    chart
        .draw_series(LineSeries::new(points.clone(), color.stroke_width(width)))
        .map_err(err)?
        .label(name)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(3)));
    chart
        .draw_series(
            points
                .into_iter()
                .map(move |p| Circle::new(p, width + 1, color.filled())),
        )
        .map_err(err)?;
    Ok(())
}

fn legend<'a, X, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>,
) -> Result<(), String>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(200, 200, 200))
        .draw()
        .map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_every_series_it_is_given() {
        let dir = std::env::temp_dir().join(format!("bench-charts-{}", std::process::id()));
        let series = vec![
            Series {
                name: "ours".into(),
                points: vec![
                    Point {
                        offered: 1000.0,
                        delivered: 1000.0,
                        p99_ms: 2.0,
                    },
                    Point {
                        offered: 2000.0,
                        delivered: 1900.0,
                        p99_ms: 40.0,
                    },
                ],
            },
            Series {
                name: "a peer".into(),
                points: vec![Point {
                    offered: 1000.0,
                    delivered: 990.0,
                    p99_ms: f64::NAN,
                }],
            },
        ];
        let files = draw(&dir, "g", "g: 3 sessions", &series).unwrap();
        let svg = std::fs::read_to_string(&files[0]).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("ours") && svg.contains("a peer"));
    }
}
