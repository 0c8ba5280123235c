//! edge-chat on one machine: axum for HTTP and WebSockets, one tokio task per room
//! around the shared `chat-handler` logic, SQLite for history.
//!
//! `main` is the whole program; `src/main.rs` and the conformance suite's own binary
//! both call it.

// Private: nothing but `main` is for use outside this crate.
mod address_cap;
mod cli;
mod clock;
mod conn_permit;
mod connection;
mod hibernation;
mod http;
mod link;
mod liveness;
mod metrics;
mod open_files;
mod open_limit;
mod registry;
mod responses;
mod room_actor;
mod room_inbox;
mod server;
mod shutdown;
mod sqlite_storage;
#[cfg(feature = "test-faults")]
mod storage_faults;
mod storage_thread;
mod stored_rooms;
mod timed_io;
mod upgrade;

use crate::address_cap::AddressCap;
use crate::cli::{Cli, TokenArgs, Tool};
use crate::connection::ConnSettings;
use crate::http::AppState;
use crate::metrics::Metrics;
use crate::registry::Rooms;
use crate::room_actor::RoomContext;
use crate::storage_thread::{Database, StorageThread};
use crate::stored_rooms::StoredRooms;
use crate::timed_io::Timeouts;
use chat_handler::identity::{self, Claims};
use chat_handler::{AuthSecret, Config, Role};
use std::collections::HashSet;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
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
    if let Some(Tool::Token(args)) = &cli.command {
        return mint_token(&cli, args);
    }
    init_tracing();
    let open_file_limit = open_files::raise_limit();
    let (config, auth_secret) = match cli.settings() {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("error: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match storage_thread::runtime(usize::from(cli.max_blocking_threads)) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli, config, auth_secret, open_file_limit));
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

/// Logs go to stdout; `RUST_LOG` overrides the default `info` filter.
fn init_tracing() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour only on a terminal, so piped logs (tests, files) stay plain text.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stdout().is_terminal())
        .try_init();
}

/// `local-runner token`: prints a signed join token on stdout. Exit status 2 without a
/// usable secret or with an invalid user id.
fn mint_token(cli: &Cli, args: &TokenArgs) -> ExitCode {
    let secret = match cli.auth_secret(|var| std::env::var(var).ok()) {
        Ok(Some(secret)) => secret,
        Ok(None) => {
            eprintln!(
                "error: no auth secret: give --auth-secret-file PATH or set {}",
                cli::AUTH_SECRET_ENV
            );
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match token_for(&secret, args, clock::now_ms()) {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// The token `local-runner token` prints at `now_ms`.
pub fn token_for(secret: &AuthSecret, args: &TokenArgs, now_ms: u64) -> Result<String, String> {
    if !identity::is_user_id(&args.sub) {
        return Err(format!(
            "--sub must be 1 to {} characters, none of them a control character",
            identity::MAX_USER_CHARS
        ));
    }
    let claims = Claims {
        sub: args.sub.clone(),
        name: args.name.clone(),
        role: args.role.as_deref().and_then(Role::parse),
        room: if args.all_rooms {
            Some(identity::ALL_ROOMS.to_owned())
        } else {
            args.room.clone()
        },
        exp: now_ms / 1000 + args.ttl,
        nbf: None,
    };
    Ok(identity::mint(secret, &claims))
}

/// Serves until the shutdown signal, then winds down: storage, the two listeners, the
/// rooms, the HTTP server, and the signal that ends it.
async fn run(
    cli: Cli,
    config: Config,
    auth_secret: Option<AuthSecret>,
    open_file_limit: Option<u64>,
) -> Result<(), String> {
    let metrics = Arc::new(Metrics::new());
    let storage = open_storage(&cli, &metrics)?;
    if !cli.static_dir.is_dir() {
        warn!(dir = %cli.static_dir.display(), "static directory not found; / will answer 404");
    }
    let listeners = Listeners::bind(&cli).await?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let rooms = open_rooms(&cli, &config, auth_secret, &storage, &metrics, &shutdown_rx);
    let limits = connection_limits(&cli, &config, open_file_limit);
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
        metrics: metrics.clone(),
        public_metrics: listeners.metrics.is_none(),
        per_address: limits.per_address.clone(),
    };
    let app = http::router(state);
    let addr = listeners.addr;
    let metrics_server = match listeners.metrics {
        Some(listener) => Some(serve_metrics(listener, metrics, shutdown_rx.clone())?),
        None => {
            info!("metrics at http://{addr}/metrics");
            None
        }
    };
    shut_down_on_signal(rooms, shutdown_tx);

    info!("edge-chat listening on http://{addr}");
    server::serve(listeners.public, app, limits, shutdown_rx).await;
    // The router (and its `alive` sender) is gone; sockets hold the rest.
    shutdown::drain(alive_rx).await;
    if let Some(server) = metrics_server {
        let _ = server.await;
    }
    storage.stop(STORAGE_STOP_TIMEOUT).await;
    info!("stopped");
    Ok(())
}

/// The storage thread, over the SQLite file in `--data-dir` or with `--in-memory` an
/// in-memory database (returned so shutdown can stop it); bounded by
/// `--max-rooms-stored`, and with the `test-faults` feature failing on purpose under
/// `--test-storage-faults`.
fn open_storage(cli: &Cli, metrics: &Metrics) -> Result<Arc<StorageThread>, String> {
    let path = if cli.in_memory {
        info!("history in memory only (--in-memory)");
        None
    } else {
        Some(sqlite_storage::init_database(&cli.data_dir)?)
    };
    let stored = match &path {
        Some(path) => sqlite_storage::stored_rooms(path)?,
        None => HashSet::new(),
    };
    let max_rooms = usize::try_from(cli.max_rooms_stored).unwrap_or(usize::MAX);
    info!(
        rooms = stored.len(),
        max_rooms_stored = max_rooms,
        "rooms in storage"
    );
    if stored.len() >= max_rooms {
        warn!("storage holds --max-rooms-stored rooms or more: no new room can be opened");
    }
    let gauge = metrics.storage_rooms(max_rooms);
    let stored = StoredRooms::new(max_rooms, stored, gauge);
    let database = match &path {
        Some(path) => Database::File(path),
        None => Database::Memory,
    };
    let thread = StorageThread::start(database, stored, metrics.append_seconds())?;
    #[cfg(feature = "test-faults")]
    let thread = match cli
        .test_storage_faults
        .as_deref()
        .and_then(storage_faults::StorageFaults::new)
    {
        Some(faults) => {
            warn!(
                ?faults,
                "TEST ONLY: storage fails on purpose (--test-storage-faults)"
            );
            thread.with_faults(faults)
        }
        None => thread,
    };
    if let Some(path) = path {
        info!(database = %path.display(), "history in SQLite");
        metrics.set_database(path);
    }
    Ok(Arc::new(thread))
}

/// The public listener (`--bind`, `--port`) and, with `--metrics-bind`, the metrics
/// one; both bound before anything is served, so a taken port fails the start.
struct Listeners {
    public: TcpListener,
    /// The public listener's address (the port, when `--port 0` picked one).
    addr: SocketAddr,
    metrics: Option<TcpListener>,
}

impl Listeners {
    async fn bind(cli: &Cli) -> Result<Self, String> {
        let public = TcpListener::bind((cli.bind, cli.port))
            .await
            .map_err(|e| format!("cannot listen on {}:{}: {e}", cli.bind, cli.port))?;
        let addr = public
            .local_addr()
            .map_err(|e| format!("cannot read the bound address: {e}"))?;
        let metrics = match cli.metrics_bind {
            Some(at) => Some(
                TcpListener::bind(at)
                    .await
                    .map_err(|e| format!("cannot listen on {at} for metrics: {e}"))?,
            ),
            None => None,
        };
        Ok(Listeners {
            public,
            addr,
            metrics,
        })
    }
}

/// The room registry: each room an actor with this config, storage and identity secret,
/// hibernating after `--hibernate-after-secs`, stopping at the shutdown signal.
fn open_rooms(
    cli: &Cli,
    config: &Config,
    auth_secret: Option<AuthSecret>,
    storage: &Arc<StorageThread>,
    metrics: &Arc<Metrics>,
    shutdown: &watch::Receiver<bool>,
) -> Arc<Rooms> {
    if auth_secret.is_some() {
        info!(
            required = config.auth_required,
            "signed identity on: join tokens are verified"
        );
    }
    Rooms::new(RoomContext {
        config: config.clone(),
        auth_secret,
        store: storage.clone(),
        metrics: metrics.clone(),
        hibernate_after: (cli.hibernate_after_secs > 0)
            .then(|| Duration::from_secs(cli.hibernate_after_secs)),
        idle_exit: ROOM_IDLE_EXIT,
        shutdown: shutdown.clone(),
    })
}

/// The HTTP server's bounds: the connection cap (by default from the open-file limit),
/// the per-address cap (shared with the WebSocket endpoint), and the timeouts.
fn connection_limits(
    cli: &Cli,
    config: &Config,
    open_file_limit: Option<u64>,
) -> server::ConnectionLimits {
    let max_connections = match cli.max_connections {
        0 => server::default_max_connections(open_file_limit.unwrap_or(1024)),
        n => n,
    };
    let per_address = cli.max_connections_per_address.map_or_else(
        || address_cap::default_per_address(max_connections),
        |n| usize::try_from(n).unwrap_or(usize::MAX),
    );
    info!(max_connections, per_address, "connection cap");
    server::ConnectionLimits {
        header_timeout: Duration::from_secs(cli.header_timeout_secs),
        timeouts: Timeouts {
            write: Duration::from_secs(cli.write_timeout_secs),
            idle: Duration::from_secs(cli.idle_timeout_secs),
        },
        max_connections,
        per_address: AddressCap::new(per_address),
        trusted: http::trusted_proxies(config),
    }
}

/// On Ctrl-C or SIGTERM: the rooms stop taking joins and close their sockets, and the
/// server (watching `shutdown`) stops accepting.
fn shut_down_on_signal(rooms: Arc<Rooms>, shutdown: watch::Sender<bool>) {
    tokio::spawn(async move {
        shutdown::signal().await;
        info!(rooms = rooms.active_rooms(), "shutting down");
        rooms.begin_shutdown();
        let _ = shutdown.send(true);
    });
}

/// Serves `GET /metrics` alone on its own listener (`--metrics-bind`) until shutdown.
fn serve_metrics(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let at = listener
        .local_addr()
        .map_err(|e| format!("cannot read the metrics address: {e}"))?;
    info!("metrics at http://{at}/metrics (only there)");
    Ok(tokio::spawn(async move {
        let served = axum::serve(listener, http::metrics_router(metrics))
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|down| *down).await;
            })
            .await;
        if let Err(e) = served {
            error!("metrics server error: {e}");
        }
    }))
}
