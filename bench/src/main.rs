//! Load generator for edge-chat: one room, N receivers plus one sender, fixed-size
//! messages at a fixed rate. Reports deliveries per second, loss and delivery latency,
//! so figures in docs/BENCHMARKS.md can be reproduced against either backend.
//!
//! The target backend must allow the sender's rate (start it with a high
//! `--rate-burst`/`--rate-per-sec`, or `--var RATE_BURST:…` on wrangler dev).

mod client;
mod procfs;
mod report;

use clap::Parser;
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
    let protocol = args.protocol();
    println!(
        "# {} receivers + 1 sender, {} B messages, room {:?} at {}, protocol {}",
        args.receivers,
        args.size,
        args.room,
        args.url,
        protocol.describe()
    );
    if let Some(n) = args.idle_connections {
        return idle_memory(&args, n).await;
    }
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
    }
    Ok(())
}

async fn one_rate(args: &Args, url: &str, rate: u32) -> Result<report::Report, String> {
    let start = Instant::now();
    let protocol = args.protocol();
    let receivers = client::connect_receivers(url, args.receivers, start, protocol).await?;
    println!(
        "# {} receivers joined in {:.2} s",
        args.receivers,
        start.elapsed().as_secs_f64()
    );
    let measure_from = Duration::from_secs(args.warmup);
    let measure_to = measure_from + Duration::from_secs(args.duration);
    let cpu_before = cpu(&args.server_pids)?;
    let sent = client::send_at_rate(
        url,
        protocol,
        rate,
        args.size,
        start,
        measure_from,
        measure_to,
    )
    .await?;
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

/// Resident memory per idle, joined connection.
async fn idle_memory(args: &Args, n: usize) -> Result<(), String> {
    if args.server_pids.is_empty() {
        return Err("--idle-connections needs --server-pid".into());
    }
    let url = client::websocket_url(&args.url, &args.room)?;
    let before = procfs::total_rss_kib(&args.server_pids)?;
    let clients = client::connect_receivers(&url, n, Instant::now(), args.protocol()).await?;
    // Let the server settle (buffers allocated on first read/write are in by now).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = procfs::total_rss_kib(&args.server_pids)?;
    println!(
        "{n} idle joined connections: server RSS {before} KiB -> {after} KiB, {:.1} KiB per connection",
        after.saturating_sub(before) as f64 / n as f64
    );
    drop(clients);
    Ok(())
}
