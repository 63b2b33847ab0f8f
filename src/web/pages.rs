//! The pages and their scripts, built into the binary, and the headers
//! every page carries.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Response, StatusCode};

pub const ROOM_HTML: &str = include_str!("assets/room.html");
pub const ROOM_JS: &str = include_str!("assets/room.js");
pub const LOGIN_HTML: &str = include_str!("assets/login.html");
pub const JOIN_HTML: &str = include_str!("assets/join.html");
pub const JOIN_JS: &str = include_str!("assets/join.js");
pub const STYLE_CSS: &str = include_str!("assets/style.css");

/// Scripts only from here, connections only back here (`'self'` covers
/// ws: and wss: to the same host), no inline script, no framing.
const CSP: &str = "default-src 'self'; connect-src 'self'; frame-ancestors 'none'";

pub type Body = Full<Bytes>;

/// A response with the security headers every answer carries.
pub fn response(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Body> {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert("content-security-policy", HeaderValue::from_static(CSP));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

pub fn html(status: StatusCode, page: Bytes) -> Response<Body> {
    response(status, "text/html; charset=utf-8", page)
}

pub fn text(status: StatusCode, message: &'static str) -> Response<Body> {
    response(
        status,
        "text/plain; charset=utf-8",
        Bytes::from_static(message.as_bytes()),
    )
}

/// A static file by path: (content type, contents).
pub fn asset(path: &str) -> Option<(&'static str, &'static str)> {
    Some(match path {
        "/room.js" => ("text/javascript; charset=utf-8", ROOM_JS),
        "/join.js" => ("text/javascript; charset=utf-8", JOIN_JS),
        "/style.css" => ("text/css; charset=utf-8", STYLE_CSS),
        _ => return None,
    })
}
