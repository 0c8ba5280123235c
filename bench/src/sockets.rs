//! Sockets for runs that hold many connections at once (idle memory, soak): each with a
//! 4 KiB read buffer instead of tungstenite's 128 KiB default, so 10,000 of them fit in
//! the load generator, and with TCP_NODELAY on, as in the throughput runs.

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{connect_async_with_config, MaybeTlsStream, WebSocketStream};

pub type Socket = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// How long one connection may take to open and, with a hello, to get its `ready`.
const JOIN_TIMEOUT: Duration = Duration::from_secs(60);

/// Opens a WebSocket without saying anything (the raw peers need nothing more).
pub async fn connect(url: &str) -> Result<Socket, String> {
    let config = WebSocketConfig::default().read_buffer_size(4096);
    let opened = tokio::time::timeout(
        JOIN_TIMEOUT,
        connect_async_with_config(url, Some(config), true),
    )
    .await
    .map_err(|_| format!("connect {url}: no answer within {JOIN_TIMEOUT:?}"))?;
    let (ws, _) = opened.map_err(|e| format!("connect {url}: {e}"))?;
    Ok(ws)
}

/// Opens a socket and joins the room as `name`; returns the socket and the `ready`
/// frame (whose `seq` is the room's last message when the session joined).
pub async fn join(url: &str, name: &str) -> Result<(Socket, Value), String> {
    let mut ws = connect(url).await?;
    let hello = serde_json::json!({ "name": name }).to_string();
    ws.send(Message::text(hello))
        .await
        .map_err(|e| format!("hello: {e}"))?;
    let deadline = Instant::now() + JOIN_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = tokio::time::timeout(left, ws.next())
            .await
            .map_err(|_| format!("{name}: no ready frame within {JOIN_TIMEOUT:?}"))?;
        match msg {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(&t).unwrap_or(Value::Null);
                if v.get("ready").is_some() {
                    return Ok((ws, v));
                }
                if let Some(e) = v.get("error") {
                    return Err(format!("server refused {name}: {e}"));
                }
            }
            Some(Ok(Message::Close(c))) => {
                return Err(format!("{name} closed while joining: {c:?}"))
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(format!("{name} while joining: {e}")),
            None => return Err(format!("{name} closed while joining")),
        }
    }
}
