//! Plain HTTP/1.1 requests (hyper's low-level client) for the edge checks. The request
//! target is sent exactly as given, so paths like `/api/room/../websocket` reach the
//! server unnormalized, unlike with URL-parsing clients.

use crate::{bail, Result};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use std::time::Duration;
use tokio::net::TcpStream;

/// Every HTTP exchange is bounded by this.
pub const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: String,
}

/// The headers of a WebSocket upgrade request (RFC 6455 sample key).
pub const UPGRADE_HEADERS: &[(&str, &str)] = &[
    ("connection", "Upgrade"),
    ("upgrade", "websocket"),
    ("sec-websocket-version", "13"),
    ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
];

/// Sends one request to `base` (`http://127.0.0.1:PORT`) and reads the whole answer.
/// A 101 answer is returned without a body.
pub async fn request(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Response> {
    request_from(None, base, method, path, headers).await
}

/// [`request`] from the local address `bind` (e.g. 127.0.0.2), when given.
pub async fn request_from(
    bind: Option<std::net::IpAddr>,
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Response> {
    match tokio::time::timeout(TIMEOUT, exchange(bind, base, method, path, headers)).await {
        Ok(r) => r,
        Err(_) => bail!("{method} {path}: no answer within {TIMEOUT:?}"),
    }
}

async fn exchange(
    bind: Option<std::net::IpAddr>,
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Response> {
    let host = base
        .strip_prefix("http://")
        .unwrap_or(base)
        .trim_end_matches('/');
    let stream = match bind {
        None => TcpStream::connect(host).await?,
        Some(ip) => {
            let addr: std::net::SocketAddr = host
                .parse()
                .map_err(|e| crate::Error(format!("bad address {host:?}: {e}")))?;
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(std::net::SocketAddr::new(ip, 0))?;
            socket.connect(addr).await?
        }
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    // Drives the connection; ends with it (`with_upgrades` keeps a 101 from erroring).
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", host);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Empty::<Bytes>::new())?;
    let resp = sender.send_request(req).await?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = if status == 101 {
        String::new()
    } else {
        let bytes = resp.into_body().collect().await?.to_bytes();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// A `POST` of `body` (with its `Content-Length`) to `path`, reading the whole answer:
/// what an app's backend sends to publish into a room.
pub async fn post(
    base: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<Response> {
    match tokio::time::timeout(TIMEOUT, post_exchange(base, path, headers, body)).await {
        Ok(r) => r,
        Err(_) => bail!("POST {path}: no answer within {TIMEOUT:?}"),
    }
}

async fn post_exchange(
    base: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<Response> {
    let host = base
        .strip_prefix("http://")
        .unwrap_or(base)
        .trim_end_matches('/');
    let stream = TcpStream::connect(host).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut req = hyper::Request::builder()
        .method("POST")
        .uri(path)
        .header("host", host)
        .header("content-length", body.len());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(http_body_util::Full::new(Bytes::from(body.to_owned())))?;
    let resp = sender.send_request(req).await?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await?.to_bytes();
    Ok(Response {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    })
}
