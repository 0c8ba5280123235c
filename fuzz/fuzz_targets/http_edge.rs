//! Arbitrary methods, paths and headers through the HTTP edge: routing and the upgrade
//! checks must answer every request with a route or a refusal, never panic, and keep
//! their documented order.
#![no_main]

use arbitrary::Arbitrary;
use chat_handler::edge::{self, Route, UpgradeRequest};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Request<'a> {
    method: &'a str,
    path: &'a str,
    origin: Option<&'a str>,
    host: Option<&'a str>,
    https: bool,
    upgrade: Option<&'a str>,
    allow: Vec<String>,
}

fuzz_target!(|req: Request<'_>| {
    match edge::route(req.method, req.path) {
        Ok(Route::Websocket(room)) => {
            // Only GET reaches the WebSocket endpoint, with a valid room name.
            assert_eq!(req.method, "GET");
            assert!(edge::validate_room(room.as_str()).is_ok());
            let upgrade = UpgradeRequest {
                origin: req.origin,
                host: req.host,
                scheme: if req.https { "https" } else { "http" },
                upgrade: req.upgrade,
            };
            if let Err(r) = edge::check_upgrade(&upgrade, &req.allow) {
                assert!(r.status == 403 || r.status == 426, "{r:?}");
            }
        }
        Ok(_) => {}
        Err(r) => assert!(matches!(r.status, 404 | 405), "{r:?}"),
    }
    let _ = edge::normalize_origin(req.path);
    let _ = edge::origin_allowed(req.origin, req.host, req.method, &req.allow);
});
