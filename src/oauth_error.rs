//! OAuth 2.0 token endpoint error responses (RFC 6749 §5.2; requirements ERR-1 … ERR-7).
//!
//! Bodies are generic on purpose: the client learns *that* it failed, the log says *why*
//! (ERR-6). `invalid_client` is answered with 401, which §5.2 allows and which tells clients
//! and proxies that this is an authentication failure; when the client used the
//! `Authorization` header, a `WWW-Authenticate` challenge for its scheme is added (ERR-3).

/// The error codes this filter answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// Client authentication failed (ERR-1).
    InvalidClient,
    /// The request is malformed: repeated or missing parameters, unparsable body (ERR-2).
    InvalidRequest,
    /// The body is larger than the configured limit (answered as `invalid_request` with 413).
    BodyTooLarge,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidClient => "invalid_client",
            ErrorCode::InvalidRequest | ErrorCode::BodyTooLarge => "invalid_request",
        }
    }

    pub fn status(self) -> u32 {
        match self {
            ErrorCode::InvalidClient => 401,
            ErrorCode::InvalidRequest => 400,
            ErrorCode::BodyTooLarge => 413,
        }
    }

    fn description(self) -> &'static str {
        match self {
            ErrorCode::InvalidClient => "client authentication failed",
            ErrorCode::InvalidRequest => "malformed token request",
            ErrorCode::BodyTooLarge => "token request body too large",
        }
    }
}

/// A local reply, ready for `send_http_response`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorResponse {
    pub status: u32,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

/// Builds the response for `code`. `authorization` is the request's `Authorization` header
/// value, if any; `realm` is the AS issuer identifier.
pub fn error_response(code: ErrorCode, authorization: Option<&str>, realm: &str) -> ErrorResponse {
    let mut headers = vec![
        ("content-type", "application/json".to_owned()),
        ("cache-control", "no-store".to_owned()),
        ("pragma", "no-cache".to_owned()),
    ];
    if code == ErrorCode::InvalidClient {
        if let Some(auth) = authorization {
            headers.push(("www-authenticate", challenge(auth, realm)));
        }
    }
    // Both strings are constants within %x20-21 / %x23-5B / %x5D-7E (ERR-4).
    let body = format!(
        r#"{{"error":"{}","error_description":"{}"}}"#,
        code.as_str(),
        code.description()
    );
    ErrorResponse {
        status: code.status(),
        headers,
        body,
    }
}

/// `<scheme> realm="<realm>"` for the scheme the client used; `Basic` when what it sent is not
/// a valid auth-scheme token (RFC 9110 §11.1).
fn challenge(authorization: &str, realm: &str) -> String {
    let scheme = authorization.split(' ').next().unwrap_or_default();
    let is_token = !scheme.is_empty()
        && scheme.len() <= 32
        && scheme.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        });
    let scheme = if is_token { scheme } else { "Basic" };
    let realm: String = realm
        .chars()
        .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
        .collect();
    format!("{scheme} realm=\"{realm}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    const REALM: &str = "https://as.example.com";

    fn header<'a>(r: &'a ErrorResponse, name: &str) -> Option<&'a str> {
        r.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// ERR-1, ERR-5, ERR-6: generic invalid_client with no-store and no-cache.
    #[test]
    fn err_1_err_5_invalid_client() {
        let r = error_response(ErrorCode::InvalidClient, None, REALM);
        assert_eq!(r.status, 401);
        assert_eq!(
            r.body,
            r#"{"error":"invalid_client","error_description":"client authentication failed"}"#
        );
        assert_eq!(header(&r, "content-type"), Some("application/json"));
        assert_eq!(header(&r, "cache-control"), Some("no-store"));
        assert_eq!(header(&r, "pragma"), Some("no-cache"));
        assert_eq!(header(&r, "www-authenticate"), None);
    }

    /// ERR-2: invalid_request is a 400.
    #[test]
    fn err_2_invalid_request() {
        let r = error_response(ErrorCode::InvalidRequest, Some("Basic abc"), REALM);
        assert_eq!(r.status, 400);
        assert!(r.body.starts_with(r#"{"error":"invalid_request""#));
        assert_eq!(header(&r, "www-authenticate"), None);
        assert_eq!(
            error_response(ErrorCode::BodyTooLarge, None, REALM).status,
            413
        );
    }

    /// ERR-3: Authorization header used → 401 with a challenge for its scheme.
    #[test]
    fn err_3_www_authenticate_for_the_scheme_used() {
        let r = error_response(
            ErrorCode::InvalidClient,
            Some("Basic czZCaGRSa3F0Mzo="),
            REALM,
        );
        assert_eq!(r.status, 401);
        assert_eq!(
            header(&r, "www-authenticate"),
            Some(r#"Basic realm="https://as.example.com""#)
        );
        let r = error_response(ErrorCode::InvalidClient, Some("Bearer x"), REALM);
        assert_eq!(
            header(&r, "www-authenticate"),
            Some(r#"Bearer realm="https://as.example.com""#)
        );
        let r = error_response(ErrorCode::InvalidClient, Some("Bä\"d x"), "https://a\"s");
        assert_eq!(
            header(&r, "www-authenticate"),
            Some(r#"Basic realm="https://as""#)
        );
    }

    /// ERR-4: bodies never contain `"` or `\` inside values, nor non-ASCII.
    #[test]
    fn err_4_body_characters() {
        for code in [
            ErrorCode::InvalidClient,
            ErrorCode::InvalidRequest,
            ErrorCode::BodyTooLarge,
        ] {
            let body = error_response(code, None, REALM).body;
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            for field in ["error", "error_description"] {
                let s = v[field].as_str().unwrap();
                assert!(s
                    .bytes()
                    .all(|b| (0x20..=0x7e).contains(&b) && b != b'"' && b != b'\\'));
            }
        }
    }
}
