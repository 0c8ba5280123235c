//! Peer for scripts/bench: the bare tokio-tungstenite broadcast the baselines note
//! measured. Every text a socket sends goes to every socket connected on the same path
//! (the path is the room). No protocol, no history, no limits: the floor a chat server
//! on the same stack is compared against.
//!
//! It is tuned the way the note says a fair one must be: a 4 KiB read buffer (the
//! default 128 KiB is zero-filled on the first read and dominates idle memory), and a
//! writer that feeds whatever is queued, then flushes once.
//!
//!   tokio-broadcast PORT

use futures_util::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

/// Most frames written between two flushes, as in our runner's writer.
const BATCH: usize = 64;

type Room = HashMap<u64, mpsc::UnboundedSender<Message>>;
type Rooms = Arc<Mutex<HashMap<String, Room>>>;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(8080);
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    let rooms: Rooms = Arc::default();
    let mut next_id = 0u64;
    loop {
        let (tcp, _) = listener.accept().await?;
        next_id += 1;
        tokio::spawn(serve(tcp, rooms.clone(), next_id));
    }
}

async fn serve(tcp: TcpStream, rooms: Rooms, id: u64) {
    let _ = tcp.set_nodelay(true);
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(16 * 1024)
        .max_message_size(Some(64 * 1024));
    let mut path = String::new();
    // The callback's signature (and its large error type) is tungstenite's.
    #[allow(clippy::result_large_err)]
    let callback = |req: &Request, res: Response| {
        path = req.uri().path().to_owned();
        Ok(res)
    };
    let Ok(ws) = tokio_tungstenite::accept_hdr_async_with_config(tcp, callback, Some(config)).await
    else {
        return;
    };
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
    lock(&rooms).entry(path.clone()).or_default().insert(id, tx);
    let writer = tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            if sink.feed(first).await.is_err() {
                return;
            }
            for _ in 1..BATCH {
                match rx.try_recv() {
                    Ok(msg) => {
                        if sink.feed(msg).await.is_err() {
                            return;
                        }
                    }
                    Err(_) => break,
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
    });
    while let Some(Ok(msg)) = stream.next().await {
        if let Message::Text(text) = msg {
            // One buffer for every recipient: the text is shared, not copied.
            let guard = lock(&rooms);
            for peer in guard.get(&path).into_iter().flat_map(|r| r.values()) {
                let _ = peer.send(Message::Text(text.clone()));
            }
        }
    }
    let mut guard = lock(&rooms);
    if let Some(room) = guard.get_mut(&path) {
        room.remove(&id);
        if room.is_empty() {
            guard.remove(&path);
        }
    }
    drop(guard);
    writer.abort();
}

fn lock(rooms: &Rooms) -> std::sync::MutexGuard<'_, HashMap<String, Room>> {
    rooms.lock().unwrap_or_else(|e| e.into_inner())
}
