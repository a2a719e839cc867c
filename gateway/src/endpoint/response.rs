//! The responses of the own endpoint's API, built in one place: plain text, JSON, and the
//! JSON error object `{"error": ..., "detail": ...}`. Every JSON answer carries
//! `Cache-Control: no-store`: evidence is per nonce, and the manifest, a snapshot's
//! progress and the app's status change, so no proxy or client may answer from a copy.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper::body::{Bytes, Frame, SizeHint};
use hyper::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Response, StatusCode};

/// The response body type of the API: chunks already in memory, sent in order. Several
/// chunks let a body share a large part (the IMA log of an evidence) with other responses
/// instead of copying it into each; the length is known, so it is sent as Content-Length.
#[derive(Debug, Default)]
pub struct Body {
    chunks: VecDeque<Bytes>,
}

impl Body {
    /// A body of `chunks`, sent one after the other.
    pub fn chunks(chunks: impl IntoIterator<Item = Bytes>) -> Body {
        Body {
            chunks: chunks.into_iter().filter(|c| !c.is_empty()).collect(),
        }
    }
}

impl From<Bytes> for Body {
    fn from(b: Bytes) -> Body {
        Body::chunks([b])
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Poll::Ready(
            self.get_mut()
                .chunks
                .pop_front()
                .map(|c| Ok(Frame::data(c))),
        )
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        let len: usize = self.chunks.iter().map(Bytes::len).sum();
        SizeHint::with_exact(u64::try_from(len).unwrap_or(u64::MAX))
    }
}

/// A `text/plain` response.
pub fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Body::from(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// A JSON response of already serialized `body`; never cached.
pub fn json(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    json_chunks(status, [body.into()])
}

/// A JSON response whose serialized body comes in `chunks`; never cached.
pub fn json_chunks(status: StatusCode, chunks: impl IntoIterator<Item = Bytes>) -> Response<Body> {
    let mut r = Response::new(Body::chunks(chunks));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// `value` as a JSON response.
pub fn json_value(status: StatusCode, value: &impl serde::Serialize) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(body) => json(status, body),
        // Plain data always serializes; answer something sensible if it ever does not.
        Err(_) => json(
            StatusCode::INTERNAL_SERVER_ERROR,
            &br#"{"error":"internal","detail":"response did not serialize"}"#[..],
        ),
    }
}

/// `{"error": error, "detail": detail}` with `status`.
pub fn json_error(status: StatusCode, error: &str, detail: &str) -> Response<Body> {
    json_value(
        status,
        &serde_json::json!({ "error": error, "detail": detail }),
    )
}

/// 503 as a JSON error with `Retry-After: seconds`: the caller should come back.
pub fn busy(error: &str, detail: &str, seconds: u32) -> Response<Body> {
    let mut r = json_error(StatusCode::SERVICE_UNAVAILABLE, error, detail);
    r.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(seconds));
    r
}

/// 405 as a JSON error, with the `Allow` header naming the methods that work.
pub fn not_allowed(allow: &'static str) -> Response<Body> {
    let r = json_error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed",
        &format!("use {allow}"),
    );
    with_allow(r, allow)
}

/// `response` with the `Allow` header set to `allow`.
pub fn with_allow(mut response: Response<Body>, allow: &'static str) -> Response<Body> {
    response
        .headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_answers_are_never_cached() {
        let r = json_error(StatusCode::BAD_REQUEST, "bad nonce", "why");
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert_eq!(r.headers()[CONTENT_TYPE], "application/json");
        assert_eq!(r.headers()[CACHE_CONTROL], "no-store");
        let r = json_value(
            StatusCode::ACCEPTED,
            &serde_json::json!({"state": "running"}),
        );
        assert_eq!(r.headers()[CACHE_CONTROL], "no-store");
        let r = not_allowed("GET, POST");
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.headers()[ALLOW], "GET, POST");
        assert_eq!(r.headers()[CACHE_CONTROL], "no-store");
    }

    #[test]
    fn busy_says_when_to_come_back() {
        let r = busy("attestation busy", "1024 wait", 1);
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[RETRY_AFTER], "1");
        assert_eq!(r.headers()[CACHE_CONTROL], "no-store");
    }

    #[tokio::test]
    async fn a_body_of_chunks_is_sent_whole_with_its_length() {
        use http_body_util::BodyExt;
        use hyper::body::Body as _;
        let body = Body::chunks([
            Bytes::from_static(b"{\"a\": \""),
            Bytes::new(),
            Bytes::from_static(b"shared"),
            Bytes::from_static(b"\"}"),
        ]);
        assert_eq!(body.size_hint().exact(), Some(15));
        let all = body.collect().await.unwrap().to_bytes();
        assert_eq!(&all[..], br#"{"a": "shared"}"#);
        assert!(Body::default().is_end_stream());
    }
}
