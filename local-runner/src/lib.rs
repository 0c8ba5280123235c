//! edge-chat on one machine: axum for HTTP and WebSockets, one tokio task per room
//! around the shared `chat-handler` logic, SQLite for history.
//!
//! `main` is the whole program; `src/main.rs` and the conformance suite's own binary
//! both call it.

// Private: nothing but `main` is for use outside this crate.
mod cli;
mod clock;
mod connection;
mod hibernation;
mod http;
mod link;
mod liveness;
mod log_tag;
mod open_limit;
mod registry;
mod room_actor;
mod room_inbox;
mod server;
mod shutdown;
mod sqlite_storage;
mod storage_thread;
mod store;

use crate::cli::Cli;
use crate::connection::ConnSettings;
use crate::http::AppState;
use crate::registry::Rooms;
use crate::room_actor::RoomContext;
use crate::store::StoreFactory;
use chat_handler::Config;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};
use tracing_subscriber::EnvFilter;

/// How long an empty room's actor stays before it retires (its history stays stored).
/// None: reopening a room costs two reads on the shared connection, while a lingering
/// empty room would cost memory that one client opening many rooms could multiply.
const ROOM_IDLE_EXIT: Duration = Duration::ZERO;

/// How long shutdown waits for the storage thread to commit what is left.
const STORAGE_STOP_TIMEOUT: Duration = Duration::from_secs(2);

/// Parses the command line and environment, runs the server until Ctrl-C or SIGTERM.
/// Exit status: 0 after a clean shutdown, 2 for a bad flag or configuration, 1 when
/// the server cannot start.
pub fn main() -> ExitCode {
    let cli = Cli::parse_from_env();
    init_tracing();
    let config = match cli.config() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli, config));
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e}");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Raises the soft open-file limit to the hard one (each connection is a file) and
/// returns the limit in force.
fn raise_open_file_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(e) => {
            warn!(error = %e, "cannot read or raise the open-file limit; assuming 1024");
            1024
        }
    }
}

/// Logs go to stdout; `RUST_LOG` overrides the default `info` filter.
fn init_tracing() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour only on a terminal, so piped logs (tests, files) stay plain text.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stdout().is_terminal())
        .try_init();
}

async fn run(cli: Cli, config: Config) -> Result<(), String> {
    let (store, storage_thread) = if cli.in_memory {
        info!("history in memory only (--in-memory)");
        (StoreFactory::memory(), None)
    } else {
        let path = sqlite_storage::init_database(&cli.data_dir)?;
        let thread = storage_thread::StorageThread::start(&path)?;
        info!(database = %path.display(), "history in SQLite");
        (StoreFactory::Sqlite(thread.clone()), Some(thread))
    };
    if !cli.static_dir.is_dir() {
        warn!(dir = %cli.static_dir.display(), "static directory not found; / will answer 404");
    }
    let listener = tokio::net::TcpListener::bind((cli.bind, cli.port))
        .await
        .map_err(|e| format!("cannot listen on {}:{}: {e}", cli.bind, cli.port))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("cannot read the bound address: {e}"))?;

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let rooms = Rooms::new(RoomContext {
        config: config.clone(),
        store,
        hibernate_after: (cli.hibernate_after_secs > 0)
            .then(|| Duration::from_secs(cli.hibernate_after_secs)),
        idle_exit: ROOM_IDLE_EXIT,
        shutdown: shutdown_rx.clone(),
    });
    let (alive, alive_rx) = mpsc::channel::<()>(1);
    let state = AppState {
        rooms: rooms.clone(),
        settings: ConnSettings {
            queue_bound: config.send_queue_bound(),
            ping_interval: Duration::from_secs(cli.ping_interval_secs),
            drain_timeout: Duration::from_millis(config.drain_timeout_ms),
        },
        config: Arc::new(config),
        static_dir: cli.static_dir.clone(),
        alive,
    };
    let app = http::router(state);
    let open_file_limit = raise_open_file_limit();
    let max_connections = match cli.max_connections {
        0 => server::default_max_connections(open_file_limit),
        n => n,
    };
    info!(max_connections, open_file_limit, "connection cap");

    tokio::spawn({
        let rooms = rooms.clone();
        async move {
            shutdown::signal().await;
            info!(rooms = rooms.active_rooms(), "shutting down");
            rooms.begin_shutdown();
            let _ = shutdown_tx.send(true);
        }
    });

    info!("edge-chat listening on http://{addr}");
    let limits = server::Limits {
        header_timeout: Duration::from_secs(cli.header_timeout_secs),
        max_connections,
    };
    server::serve(listener, app, limits, shutdown_rx).await;
    // The router (and its `alive` sender) is gone; sockets hold the rest.
    shutdown::drain(alive_rx).await;
    if let Some(thread) = storage_thread {
        thread.stop(STORAGE_STOP_TIMEOUT).await;
    }
    info!("stopped");
    Ok(())
}
