//! Complete HTTP responses (status, headers, body) for the host to send as they are.

use http::header::{ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_MAX_AGE, ALLOW, CONTENT_TYPE};
use http::{HeaderValue, Response, StatusCode};

use crate::error::NeonError;
use crate::request::SqlRequest;

/// Headers a browser may send on `/sql`: Neon's list plus `Neon-Batch-Deferrable`, which Neon's
/// list lacks although the driver sends it, and tidepool's query-cache opt-in headers.
pub const CORS_ALLOW_HEADERS: &str = "Authorization, Neon-Connection-String, Neon-Raw-Text-Output, \
     Neon-Array-Mode, Neon-Pool-Opt-In, Neon-Batch-Read-Only, Neon-Batch-Isolation-Level, \
     Neon-Batch-Deferrable, Tidepool-Cache-Ttl, Tidepool-Cache-Swr, Tidepool-Cache-Tags";

fn json(status: StatusCode, body: Vec<u8>) -> Response<Vec<u8>> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    response
}

/// HTTP 200 with an encoded result body; batch responses echo the batch option headers.
pub fn success_response(request: &SqlRequest, body: Vec<u8>) -> Response<Vec<u8>> {
    let mut response = json(StatusCode::OK, body);
    if request.is_batch() {
        request.options.batch.write_response_headers(response.headers_mut());
    }
    response
}

/// The error's status and JSON body.
pub fn error_response(error: &NeonError) -> Response<Vec<u8>> {
    json(error.status(), error.body())
}

/// The answer to `OPTIONS /sql`.
pub fn preflight_response() -> Response<Vec<u8>> {
    let mut response = Response::new(Vec::new());
    let headers = response.headers_mut();
    headers.insert(ALLOW, HeaderValue::from_static("OPTIONS, POST"));
    headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    headers.insert(ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static(CORS_ALLOW_HEADERS));
    headers.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("86400"));
    response
}

impl NeonError {
    /// Shorthand for [`error_response`].
    pub fn to_response(&self) -> Response<Vec<u8>> {
        error_response(self)
    }
}

#[cfg(test)]
mod tests {
    use http::header::CONTENT_TYPE;
    use http::HeaderMap;

    use super::*;
    use crate::{parse_request, Limits, BATCH_ISOLATION_LEVEL, BATCH_READ_ONLY, CONNECTION_STRING};

    fn request(body: &str, batch_headers: bool) -> SqlRequest {
        let mut h = HeaderMap::new();
        h.insert(CONNECTION_STRING, "postgres://u:p@h/db".parse().unwrap());
        if batch_headers {
            h.insert(BATCH_ISOLATION_LEVEL, "RepeatableRead".parse().unwrap());
            h.insert(BATCH_READ_ONLY, "true".parse().unwrap());
        }
        parse_request(&h, body.as_bytes(), &Limits::default()).unwrap()
    }

    #[test]
    fn success_headers() {
        let r = success_response(&request(r#"{"query":"q"}"#, true), b"{}".to_vec());
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[CONTENT_TYPE], "application/json");
        assert_eq!(r.headers()[ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        // Batch headers are echoed only for batches.
        assert!(r.headers().get(BATCH_ISOLATION_LEVEL).is_none());

        let r = success_response(&request(r#"{"queries":[]}"#, true), b"{}".to_vec());
        assert_eq!(r.headers()[BATCH_ISOLATION_LEVEL], "RepeatableRead");
        assert_eq!(r.headers()[BATCH_READ_ONLY], "true");
        assert_eq!(r.body(), b"{}");
    }

    #[test]
    fn error_headers() {
        let r = NeonError::RequestTooLarge { limit: 1 }.to_response();
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(r.headers()[CONTENT_TYPE], "application/json");
        assert_eq!(r.headers()[ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    }

    #[test]
    fn preflight() {
        let r = preflight_response();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[ALLOW], "OPTIONS, POST");
        assert_eq!(r.headers()[ACCESS_CONTROL_MAX_AGE], "86400");
        let allowed = r.headers()[ACCESS_CONTROL_ALLOW_HEADERS].to_str().unwrap();
        for name in ["Neon-Connection-String", "Neon-Batch-Deferrable", "Authorization"] {
            assert!(allowed.contains(name), "{name}");
        }
    }
}
