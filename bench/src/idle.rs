//! Idle memory: hold ROOMS x MEMBERS joined, silent connections and report the server's
//! resident memory per connection. Rooms fill side by side, their members one after
//! another (each join is answered before the next, as people arrive), and every socket
//! keeps reading so the server's pings are answered.

use crate::{client, procfs, sockets};
use futures_util::StreamExt;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What an idle run measured.
pub struct Idle {
    pub connections: usize,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    pub join_secs: f64,
}

impl Idle {
    pub fn kib_per_connection(&self) -> f64 {
        self.rss_after_kib.saturating_sub(self.rss_before_kib) as f64
            / self.connections.max(1) as f64
    }
}

/// Connections held open, each by a task that reads until told to stop.
pub struct Held {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Held {
    pub async fn release(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Opens `rooms` x `members` connections in rooms `{room}-0`, `{room}-1`, … (joined with
/// a hello unless `raw`) and keeps them open and read until released.
pub async fn hold(
    base: &str,
    room: &str,
    rooms: usize,
    members: usize,
    raw: bool,
) -> Result<Held, String> {
    let (stop, stopped) = watch::channel(false);
    let mut fills = Vec::with_capacity(rooms);
    for r in 0..rooms {
        let url = client::websocket_url(base, &format!("{room}-{r}"))?;
        let stopped = stopped.clone();
        fills.push(tokio::spawn(async move {
            let mut tasks = Vec::with_capacity(members);
            for m in 0..members {
                let ws = if raw {
                    sockets::connect(&url).await?
                } else {
                    sockets::join(&url, &format!("i{r}-{m}")).await?.0
                };
                tasks.push(tokio::spawn(read_until_stopped(ws, stopped.clone())));
            }
            Ok::<_, String>(tasks)
        }));
    }
    let mut tasks = Vec::with_capacity(rooms * members);
    let mut first_error = None;
    for fill in fills {
        match fill.await {
            Ok(Ok(t)) => tasks.extend(t),
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(e) => {
                first_error.get_or_insert(format!("a room's fill failed: {e}"));
            }
        }
    }
    let held = Held { stop, tasks };
    if let Some(e) = first_error {
        held.release().await;
        return Err(e);
    }
    Ok(held)
}

async fn read_until_stopped(mut ws: sockets::Socket, mut stopped: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = stopped.wait_for(|s| *s) => break,
            msg = ws.next() => if !matches!(msg, Some(Ok(_))) { break },
        }
    }
}

/// Measures the server's RSS before and after holding the connections.
pub async fn measure(
    base: &str,
    room: &str,
    rooms: usize,
    members: usize,
    raw: bool,
    server_pids: &[u32],
) -> Result<Idle, String> {
    if server_pids.is_empty() {
        return Err("--idle-connections needs --server-pid".into());
    }
    let rss_before_kib = procfs::total_rss_kib(server_pids)?;
    let start = Instant::now();
    let held = hold(base, room, rooms, members, raw).await?;
    let join_secs = start.elapsed().as_secs_f64();
    // Let the server settle: buffers allocated on the first read or write are in by now.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after_kib = procfs::total_rss_kib(server_pids)?;
    held.release().await;
    Ok(Idle {
        connections: rooms * members,
        rss_before_kib,
        rss_after_kib,
        join_secs,
    })
}
