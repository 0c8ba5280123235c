//! Load generator for edge-chat: one room, N receivers plus one sender, fixed-size
//! messages at a fixed rate. Reports deliveries per second, loss and delivery latency,
//! so figures in docs/BENCHMARKS.md can be reproduced against either backend.
//!
//! The target backend must allow the sender's rate (start it with a high
//! `--rate-burst`/`--rate-per-sec`, or `--var RATE_BURST:…` on wrangler dev).

mod charts;
mod client;
mod idle;
mod many;
mod procfs;
mod raw;
mod report;
mod results;
mod soak;
mod sockets;

use clap::Parser;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Parser, Debug, Clone)]
#[command(about = "Load generator for edge-chat backends")]
pub struct Args {
    /// Base URL of the backend (http://host:port).
    #[arg(long, default_value = "http://127.0.0.1:8787")]
    pub url: String,
    /// Room to use (a fresh one per run is best).
    #[arg(long, default_value = "bench")]
    pub room: String,
    /// Receivers in the room besides the sender.
    #[arg(long, default_value_t = 200)]
    pub receivers: usize,
    /// Chat messages per second from the sender; each goes to every session (receivers + 1).
    /// Several values (comma-separated) run one after another, to find the knee.
    #[arg(long, value_delimiter = ',', default_value = "1000")]
    pub rates: Vec<u32>,
    /// Length of each message text in bytes.
    #[arg(long, default_value_t = 128)]
    pub size: usize,
    /// Seconds of warm-up before measuring, at each rate.
    #[arg(long, default_value_t = 2)]
    pub warmup: u64,
    /// Seconds measured at each rate.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// The server's process ids (repeatable): adds its CPU time per delivery, read
    /// from /proc over each sending phase.
    #[arg(long = "server-pid")]
    pub server_pids: Vec<u32>,
    /// Instead of chat traffic: connect this many joined, idle clients and report the
    /// server's resident memory per connection (needs --server-pid).
    #[arg(long)]
    pub idle_connections: Option<usize>,
    /// With --idle-connections: spread them evenly over this many rooms
    /// (`ROOM-0`, `ROOM-1`, …), filled side by side.
    #[arg(long, default_value_t = 1)]
    pub idle_rooms: usize,
    /// For the peers in bench/peers/, which broadcast any text unchanged: no hello and no
    /// JSON; each text starts with its send time.
    #[arg(long)]
    pub raw: bool,
    /// Instead of a rate run: a soak of ROOMSxMEMBERS joined connections (e.g. 100x100)
    /// with live traffic, checking every delivery (see --soak-secs, --soak-rate).
    #[arg(long, value_parser = parse_grid, value_name = "ROOMSxMEMBERS")]
    pub soak: Option<(usize, usize)>,
    /// Instead of a rate run: ROOMSxMEMBERS joined connections (e.g. 1000x100) from many
    /// loopback source addresses, then one message per second in every room for
    /// --many-secs: join time, RSS per connection, latency and loss.
    #[arg(long, value_parser = parse_grid, value_name = "ROOMSxMEMBERS")]
    pub many: Option<(usize, usize)>,
    /// Seconds of --many traffic (one message per second per room).
    #[arg(long, default_value_t = 30)]
    pub many_secs: u64,
    /// --many connections per source address (127.0.0.2, 127.0.0.3, …).
    #[arg(long, default_value_t = 500)]
    pub many_per_address: usize,
    /// --many joins in flight at once.
    #[arg(long, default_value_t = 256)]
    pub many_concurrency: usize,
    /// Seconds of soak traffic.
    #[arg(long, default_value_t = 60)]
    pub soak_secs: u64,
    /// Soak messages per second in each room.
    #[arg(long, default_value_t = 2)]
    pub soak_rate: u32,
    /// Append each result as a CSV line to this file (read back by --summarize).
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// The server's name in --csv lines.
    #[arg(long, default_value = "ours")]
    pub label: String,
    /// The comparison group in --csv lines: servers measured under the same load.
    #[arg(long, default_value = "local")]
    pub group: String,
    /// Which run of a repeated series this is, in --csv lines.
    #[arg(long, default_value_t = 1)]
    pub run: u32,
    /// Instead of a run: read a --csv file, print the medians of its runs as markdown
    /// tables (servers side by side), and draw SVG charts into --charts-dir.
    #[arg(long, value_name = "CSV")]
    pub summarize: Option<PathBuf>,
    #[arg(long, default_value = "docs/bench")]
    pub charts_dir: PathBuf,
    /// Join with protocol v2 (`"v": 2`).
    #[arg(long)]
    pub v2: bool,
    /// Join with protocol v2 and batching (`"v": 2, "batch": true`); receivers unwrap
    /// batches and count each frame as a delivery.
    #[arg(long)]
    pub batch: bool,
}

impl Args {
    /// The hello fields besides the name.
    pub fn protocol(&self) -> client::Protocol {
        client::Protocol {
            v2: self.v2 || self.batch,
            batch: self.batch,
        }
    }
}

/// `100x100` -> (100, 100).
fn parse_grid(s: &str) -> Result<(usize, usize), String> {
    let (a, b) = s
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("expected ROOMSxMEMBERS, got {s:?}"))?;
    let n = |t: &str| t.trim().parse::<usize>().ok().filter(|n| *n > 0);
    match (n(a), n(b)) {
        (Some(a), Some(b)) => Ok((a, b)),
        _ => Err(format!(
            "expected ROOMSxMEMBERS with positive numbers, got {s:?}"
        )),
    }
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bench: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    if let Some(file) = &args.summarize {
        return results::summarize(file, &args.charts_dir);
    }
    if let Some((rooms, members)) = args.soak {
        let plan = soak::Plan {
            rooms,
            members,
            secs: args.soak_secs,
            rate: args.soak_rate,
        };
        return soak::run(&args.url, &args.room, &plan, &args.server_pids).await;
    }
    if let Some((rooms, members)) = args.many {
        let plan = many::Plan {
            rooms,
            members,
            secs: args.many_secs,
            per_address: args.many_per_address,
            concurrency: args.many_concurrency,
            protocol: args.protocol(),
        };
        return many::run(&args.url, &args.room, &plan, &args.server_pids).await;
    }
    if let Some(n) = args.idle_connections {
        return idle_memory(&args, n).await;
    }
    let protocol = args.protocol();
    println!(
        "# {} receivers + 1 sender, {} B messages, room {:?} at {}, protocol {}",
        args.receivers,
        args.size,
        args.room,
        args.url,
        if args.raw { "raw" } else { protocol.describe() }
    );
    println!("{}", report::Report::header());
    for (i, &rate) in args.rates.iter().enumerate() {
        // A fresh room per rate, so one step's backlog does not spill into the next.
        let room = if args.rates.len() > 1 {
            format!("{}-{i}", args.room)
        } else {
            args.room.clone()
        };
        let url = client::websocket_url(&args.url, &room)?;
        let report = one_rate(&args, &url, rate).await?;
        println!("{}", report.row());
        if let Some(file) = &args.csv {
            results::append_load(file, &tag(&args), &report.figures())?;
        }
    }
    Ok(())
}

/// How long no receiver may get anything before a room counts as settled after its
/// joins, and how long the bench waits for that at most.
const SETTLE_QUIET: Duration = Duration::from_millis(500);
const SETTLE_MAX: Duration = Duration::from_secs(300);

async fn one_rate(args: &Args, url: &str, rate: u32) -> Result<report::Report, String> {
    let start = Instant::now();
    let protocol = args.protocol();
    let activity = client::Activity::default();
    let receivers = if args.raw {
        raw::connect_receivers(url, args.receivers, start, &activity).await?
    } else {
        client::connect_receivers(url, args.receivers, start, protocol, &activity).await?
    };
    let joined_in = start.elapsed();
    // Measure a settled room: the joins' own frames drain first (a v1 room of 1,000
    // sends about a million `joined` frames while it fills), so that neither the
    // warm-up nor the measured window queues behind them. Join time is reported apart.
    let settled_in = client::settle(&activity, start, SETTLE_QUIET, SETTLE_MAX).await?;
    println!(
        "# {} receivers joined in {:.2} s; the room settled {:.2} s later (no frame for {} ms)",
        args.receivers,
        joined_in.as_secs_f64(),
        settled_in.as_secs_f64(),
        SETTLE_QUIET.as_millis()
    );
    let measure_from = Duration::from_secs(args.warmup);
    let measure_to = measure_from + Duration::from_secs(args.duration);
    let cpu_before = cpu(&args.server_pids)?;
    let sent = if args.raw {
        raw::send_at_rate(url, rate, args.size, start, measure_from, measure_to).await?
    } else {
        client::send_at_rate(
            url,
            protocol,
            rate,
            args.size,
            start,
            measure_from,
            measure_to,
        )
        .await?
    };
    let cpu_used = match (cpu_before, cpu(&args.server_pids)?) {
        (Some(before), Some(after)) => Some(after.saturating_sub(before)),
        _ => None,
    };
    // Let in-flight frames arrive; a bounded grace period, then stop counting.
    let stats = client::collect(receivers, Duration::from_secs(3)).await;
    Ok(report::Report::new(
        rate,
        args.receivers + 1,
        args.duration,
        sent,
        stats,
        cpu_used,
        args.warmup,
    ))
}

fn cpu(pids: &[u32]) -> Result<Option<Duration>, String> {
    if pids.is_empty() {
        return Ok(None);
    }
    procfs::total_cpu(pids).map(Some)
}

fn tag(args: &Args) -> results::Tag<'_> {
    results::Tag {
        group: &args.group,
        server: &args.label,
        run: args.run,
    }
}

/// Resident memory per idle, joined connection, over `--idle-rooms` rooms.
async fn idle_memory(args: &Args, n: usize) -> Result<(), String> {
    let rooms = args.idle_rooms.max(1);
    let members = n / rooms;
    if members * rooms != n {
        return Err(format!(
            "--idle-connections {n} does not split evenly into {rooms} rooms"
        ));
    }
    let idle = idle::measure(
        &args.url,
        &args.room,
        rooms,
        members,
        args.raw,
        &args.server_pids,
    )
    .await?;
    println!(
        "{n} idle joined connections ({rooms} rooms x {members}, joined in {:.1} s): \
         server RSS {} KiB -> {} KiB, {:.1} KiB per connection",
        idle.join_secs,
        idle.rss_before_kib,
        idle.rss_after_kib,
        idle.kib_per_connection()
    );
    if let Some(file) = &args.csv {
        results::append_idle(file, &tag(args), idle.kib_per_connection(), n)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grids_parse() {
        assert_eq!(parse_grid("100x100"), Ok((100, 100)));
        assert_eq!(parse_grid("2X3"), Ok((2, 3)));
        assert!(parse_grid("0x5").is_err());
        assert!(parse_grid("100").is_err());
    }
}
