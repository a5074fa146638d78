//! The token request as the filter sees it: the `application/x-www-form-urlencoded` body
//! (RFC 6749 §3.2, Appendix B) reduced to the client-authentication parameters, and which
//! authentication method those parameters select (requirements REQ-1 … REQ-9).

use std::fmt;

/// `client_assertion_type` of the JWT-SVID method (draft-02 §3.1).
pub const JWT_SPIFFE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-spiffe";

/// Parameters this filter reads. Each may appear at most once (REQ-3). Other parameters are
/// left to the AS; some, such as `resource` (RFC 8707) and `audience` (RFC 8693), may repeat.
const AUTH_PARAMETERS: [&str; 4] = [
    "client_id",
    "client_secret",
    "client_assertion_type",
    "client_assertion",
];

/// Why a body is not an acceptable token request (answered with `invalid_request`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormError {
    /// A `%` not followed by two hex digits.
    BadPercentEncoding,
    /// A decoded name or value is not UTF-8.
    NotUtf8,
    /// A decoded value contains NUL.
    NulByte,
    /// An authentication parameter appears more than once (REQ-3).
    Repeated(&'static str),
}

impl fmt::Display for FormError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FormError::BadPercentEncoding => f.write_str("malformed percent-encoding"),
            FormError::NotUtf8 => f.write_str("decoded form field is not UTF-8"),
            FormError::NulByte => f.write_str("form field contains NUL"),
            FormError::Repeated(name) => write!(f, "parameter {name} is repeated"),
        }
    }
}

/// The client-authentication parameters of a token request. Empty values count as absent
/// (RFC 6749 §3.2; REQ-4).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthParameters {
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub client_assertion_type: Option<String>,
    pub client_assertion: Option<String>,
}

/// Which client-authentication method the body selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    /// `client_assertion_type` is exactly the jwt-spiffe URN (REQ-7).
    JwtSvid,
    /// No assertion type, or another assertion type: not ours, the AS decides.
    NotSpiffe,
    /// The assertion type differs from the jwt-spiffe URN only by case, surrounding white space
    /// or an extra level of percent-encoding. An AS that compares URNs case-insensitively
    /// (RFC 8141) could read it as jwt-spiffe, so it is refused rather than passed on (REQ-6).
    NearMissAssertionType,
}

impl AuthParameters {
    /// Decodes a form body and extracts the authentication parameters.
    pub fn from_form(body: &[u8]) -> Result<AuthParameters, FormError> {
        let mut params = AuthParameters::default();
        let mut seen = [false; AUTH_PARAMETERS.len()];
        for pair in body.split(|&b| b == b'&') {
            if pair.is_empty() {
                continue;
            }
            let (raw_name, raw_value) = match pair.iter().position(|&b| b == b'=') {
                Some(at) => (
                    pair.get(..at).unwrap_or_default(),
                    pair.get(at + 1..).unwrap_or_default(),
                ),
                None => (pair, &[][..]),
            };
            let name = form_decode(raw_name)?;
            let Some(index) = AUTH_PARAMETERS.iter().position(|p| *p == name) else {
                // Unknown parameters are ignored (REQ-5), but must still be well-formed.
                form_decode(raw_value)?;
                continue;
            };
            let slot = seen.get_mut(index).ok_or(FormError::NotUtf8)?;
            if *slot {
                let param = AUTH_PARAMETERS.get(index).copied().unwrap_or_default();
                return Err(FormError::Repeated(param));
            }
            *slot = true;
            let value = form_decode(raw_value)?;
            let value = (!value.is_empty()).then_some(value);
            match index {
                0 => params.client_id = value,
                1 => params.client_secret = value,
                2 => params.client_assertion_type = value,
                _ => params.client_assertion = value,
            }
        }
        Ok(params)
    }

    /// The method the parameters select.
    pub fn method(&self) -> Method {
        match self.client_assertion_type.as_deref() {
            Some(JWT_SPIFFE) => Method::JwtSvid,
            Some(other) if is_near_miss(other) => Method::NearMissAssertionType,
            _ => Method::NotSpiffe,
        }
    }
}

fn is_near_miss(value: &str) -> bool {
    let mut candidate = case_fold(value.trim());
    // Up to two further levels of percent-encoding (a client that encoded twice, FC-13 g).
    for _ in 0..3 {
        if candidate == JWT_SPIFFE {
            return true;
        }
        match form_decode(candidate.as_bytes()) {
            Ok(decoded) if decoded != candidate => candidate = case_fold(decoded.trim()),
            _ => return false,
        }
    }
    candidate == JWT_SPIFFE
}

/// Lowercases ASCII, and maps the four non-ASCII letters whose simple case mapping is an ASCII
/// letter (U+017F `ſ` → S, U+0131 `ı` → I, U+0130 `İ` → i, U+212A Kelvin sign → k) to it: a
/// case-insensitive comparison such as Java's `equalsIgnoreCase` equates them.
fn case_fold(value: &str) -> String {
    value
        .chars()
        .map(|c| match c {
            '\u{17f}' => 's',
            '\u{131}' | '\u{130}' => 'i',
            '\u{212a}' => 'k',
            other => other.to_ascii_lowercase(),
        })
        .collect()
}

/// The form of a request path used to recognise the token endpoint. An AS framework may route
/// many spellings of a path to one handler, so all of these are folded away: query and
/// fragment; percent-escapes (decoded twice, for servers that decode again); `\` as `/`;
/// `;` path parameters; empty and `.` segments; `..` applied; trailing white space, control
/// characters and dots of a segment (`/token%0a`, `/token.`); a file extension on the last
/// segment (`/token.json`, suffix matching); and case, with the non-ASCII letters that
/// case-insensitive comparisons equate with ASCII ones. A spelling the AS may treat as its
/// token path is then never one the filter does not recognise.
pub fn canonical_path(path: &str) -> String {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let decoded = percent_decode_lenient(&percent_decode_lenient(path.as_bytes()));
    let decoded = String::from_utf8_lossy(&decoded).replace('\\', "/");
    let mut segments: Vec<String> = Vec::new();
    for segment in decoded.split('/') {
        match segment.split(';').next().unwrap_or_default() {
            ".." => {
                segments.pop();
            }
            other => {
                let trimmed = other
                    .trim_end_matches(|c: char| c.is_whitespace() || c.is_control() || c == '.');
                if !trimmed.is_empty() {
                    segments.push(case_fold(trimmed));
                }
            }
        }
    }
    if let Some(last) = segments.last_mut() {
        if let Some(dot) = last.get(1..).and_then(|rest| rest.find('.')) {
            last.truncate(dot + 1);
        }
    }
    format!("/{}", segments.join("/"))
}

/// `%XX` decoding that leaves malformed escapes as they are.
fn percent_decode_lenient(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        let escaped = (b == b'%')
            .then(|| {
                let hi = raw.get(i + 1).and_then(|&c| hex_value(c))?;
                let lo = raw.get(i + 2).and_then(|&c| hex_value(c))?;
                Some(hi << 4 | lo)
            })
            .flatten();
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// application/x-www-form-urlencoded decoding: `+` is a space, `%XX` a byte; the result must be
/// UTF-8 without NUL.
fn form_decode(raw: &[u8]) -> Result<String, FormError> {
    let mut out = Vec::with_capacity(raw.len());
    let mut bytes = raw.iter();
    while let Some(&b) = bytes.next() {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = bytes.next().and_then(|&c| hex_value(c));
                let lo = bytes.next().and_then(|&c| hex_value(c));
                match (hi, lo) {
                    (Some(hi), Some(lo)) => out.push(hi << 4 | lo),
                    _ => return Err(FormError::BadPercentEncoding),
                }
            }
            other => out.push(other),
        }
    }
    if out.contains(&0) {
        return Err(FormError::NulByte);
    }
    String::from_utf8(out).map_err(|_| FormError::NotUtf8)
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Whether a `content-type` header value is `application/x-www-form-urlencoded`, compared
/// case-insensitively with parameters allowed; a `charset`, if present, must be UTF-8 (FC-13).
pub fn is_form_content_type(value: &str) -> bool {
    let mut parts = value.split(';');
    let media_type = parts.next().unwrap_or_default().trim();
    if !media_type.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return false;
    }
    parts.all(|param| {
        let Some((name, val)) = param.split_once('=') else {
            return param.trim().is_empty();
        };
        if !name.trim().eq_ignore_ascii_case("charset") {
            return true;
        }
        let charset = val.trim().trim_matches('"');
        charset.eq_ignore_ascii_case("utf-8") || charset.eq_ignore_ascii_case("utf8")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TYPE_ENC: &str = "urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-spiffe";

    fn parse(body: &str) -> Result<AuthParameters, FormError> {
        AuthParameters::from_form(body.as_bytes())
    }

    /// §4.5 accept shape: percent-encoded values are decoded once (REQ-1, REQ-7).
    #[test]
    fn req_1_req_7_accept_shape() {
        let body = format!(
            "grant_type=client_credentials&client_id=spiffe%3A%2F%2Fexample.org%2Fmy-oauth-client&client_assertion_type={TYPE_ENC}&client_assertion=a.b.c"
        );
        let p = parse(&body).unwrap();
        assert_eq!(
            p.client_id.as_deref(),
            Some("spiffe://example.org/my-oauth-client")
        );
        assert_eq!(p.client_assertion_type.as_deref(), Some(JWT_SPIFFE));
        assert_eq!(p.client_assertion.as_deref(), Some("a.b.c"));
        assert_eq!(p.method(), Method::JwtSvid);
    }

    /// FC-13 e / f: raw colons and lower-case hex are the same type.
    #[test]
    fn fc_13_raw_and_lowercase_hex() {
        let raw = parse(&format!("client_assertion_type={JWT_SPIFFE}")).unwrap();
        assert_eq!(raw.method(), Method::JwtSvid);
        let lower = parse(&format!(
            "client_assertion_type={}",
            TYPE_ENC.to_lowercase()
        ))
        .unwrap();
        assert_eq!(lower.method(), Method::JwtSvid);
    }

    /// REQ-3 / FC-11: repeated authentication parameters, even empty or identical copies.
    #[test]
    fn req_3_repeated_parameters() {
        for (body, name) in [
            ("client_assertion=A&client_assertion=B", "client_assertion"),
            ("client_assertion=&client_assertion=B", "client_assertion"),
            ("client_id=x&client_id=x", "client_id"),
            (
                "client_assertion_type=a&client_assertion_type=a",
                "client_assertion_type",
            ),
            ("client_secret=a&client_secret=b", "client_secret"),
            ("client%5Fid=a&client_id=b", "client_id"),
        ] {
            assert_eq!(parse(body), Err(FormError::Repeated(name)), "{body}");
        }
        // Other parameters may repeat (RFC 8707 resource, RFC 8693 audience).
        assert!(parse("resource=a&resource=b&scope=x").is_ok());
    }

    /// REQ-4: an empty value is absent.
    #[test]
    fn req_4_empty_is_absent() {
        let p = parse(&format!(
            "client_id=&client_assertion_type={TYPE_ENC}&client_assertion=t"
        ))
        .unwrap();
        assert_eq!(p.client_id, None);
        let p = parse("client_assertion_type=&client_assertion").unwrap();
        assert_eq!(p, AuthParameters::default());
        assert_eq!(p.method(), Method::NotSpiffe);
    }

    /// REQ-5: unknown parameters are ignored.
    #[test]
    fn req_5_unknown_parameters_ignored() {
        let p = parse("foo=bar&&x&grant_type=client_credentials&client_id=c").unwrap();
        assert_eq!(p.client_id.as_deref(), Some("c"));
    }

    /// REQ-6, REQ-7, FC-13 g, Q5: case or space variants and double encoding are near misses;
    /// another assertion type is not ours; a differently cased name is not recognized.
    #[test]
    fn req_6_req_7_assertion_type_variants() {
        let method = |v: &str| {
            parse(&format!("client_assertion_type={v}"))
                .unwrap()
                .method()
        };
        assert_eq!(
            method("URN:IETF:PARAMS:OAUTH:CLIENT-ASSERTION-TYPE:JWT-SPIFFE"),
            Method::NearMissAssertionType
        );
        assert_eq!(
            method("urn:ietf:params:oauth:client-assertion-type:JWT-SPIFFE"),
            Method::NearMissAssertionType
        );
        assert_eq!(
            method(&format!("{TYPE_ENC}%20")),
            Method::NearMissAssertionType
        );
        assert_eq!(
            method(&format!("+{TYPE_ENC}")),
            Method::NearMissAssertionType
        );
        assert_eq!(
            method(&TYPE_ENC.replace("%3A", "%253A")),
            Method::NearMissAssertionType
        );
        assert_eq!(
            method(&TYPE_ENC.replace("%3A", "%25253A")),
            Method::NearMissAssertionType
        );
        assert_eq!(
            method("urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer"),
            Method::NotSpiffe
        );
        assert_eq!(
            method("urn:ietf:params:oauth:client-assertion-type:jwt-spiffe2"),
            Method::NotSpiffe
        );
        let p = parse(&format!("Client_Assertion_Type={TYPE_ENC}")).unwrap();
        assert_eq!(p.method(), Method::NotSpiffe);
    }

    /// REQ-6: non-ASCII letters that case-insensitive comparisons equate with ASCII ones.
    #[test]
    fn req_6_unicode_case_fold_near_miss() {
        let method = |v: &str| {
            parse(&format!("client_assertion_type={v}"))
                .unwrap()
                .method()
        };
        // U+017F LATIN SMALL LETTER LONG S, percent-encoded as UTF-8.
        let long_s = JWT_SPIFFE.replace("jwt-spiffe", "jwt-%C5%BFpiffe");
        assert_eq!(method(&long_s), Method::NearMissAssertionType);
        // U+0131 LATIN SMALL LETTER DOTLESS I.
        let dotless_i = JWT_SPIFFE.replace("spiffe", "sp%C4%B1ffe");
        assert_eq!(method(&dotless_i), Method::NearMissAssertionType);
        // U+0130 LATIN CAPITAL LETTER I WITH DOT ABOVE.
        let dotted_i = JWT_SPIFFE.replace("spiffe", "sp%C4%B0ffe");
        assert_eq!(method(&dotted_i), Method::NearMissAssertionType);
        // A fullwidth letter is no case variant.
        let fullwidth = JWT_SPIFFE.replace("spiffe", "%EF%BD%93piffe");
        assert_eq!(method(&fullwidth), Method::NotSpiffe);
    }

    /// Token path recognition is not fooled by spellings an AS may normalise.
    #[test]
    fn canonical_token_paths() {
        for p in [
            "/token",
            "//token",
            "///token",
            "/token/",
            "/TOKEN",
            "/%74oken",
            "/token;a=b",
            "/./token",
            "/x/../token",
            "/token%2F",
            "/token?x=1",
            "//token?x",
            "/token#f",
        ] {
            assert_eq!(canonical_path(p), "/token", "{p}");
        }
        assert_eq!(canonical_path("/oauth2/Token"), "/oauth2/token");
        assert_eq!(canonical_path("/a%zz"), "/a%zz");
        assert_eq!(canonical_path("/../.."), "/");
        assert_ne!(canonical_path("/tokens"), "/token");
        assert_ne!(canonical_path("/tok/en"), "/token");
        assert_eq!(
            canonical_path("/.well-known/openid-configuration"),
            "/.well-known/openid-configuration"
        );
        assert_eq!(canonical_path("/realm%C5%BF/x"), "/realms/x");
    }

    /// FC-13 j / k: malformed escapes, invalid UTF-8 and NUL are refused.
    #[test]
    fn fc_13_malformed_encodings() {
        assert_eq!(
            parse("client_assertion=ab%zz"),
            Err(FormError::BadPercentEncoding)
        );
        assert_eq!(
            parse("client_assertion=ab%3"),
            Err(FormError::BadPercentEncoding)
        );
        assert_eq!(parse("x=%"), Err(FormError::BadPercentEncoding));
        assert_eq!(parse("client_id=a%00b"), Err(FormError::NulByte));
        assert_eq!(parse("client_id=%ff"), Err(FormError::NotUtf8));
        assert_eq!(
            AuthParameters::from_form(b"client_id=\xff"),
            Err(FormError::NotUtf8)
        );
    }

    /// FC-13 i: `+` decodes to a space.
    #[test]
    fn fc_13_plus_is_space() {
        let p = parse("client_id=spiffe://example.org/my+oauth-client").unwrap();
        assert_eq!(
            p.client_id.as_deref(),
            Some("spiffe://example.org/my oauth-client")
        );
    }

    /// FC-13 a / b / c / d: content types.
    #[test]
    fn fc_13_content_types() {
        assert!(is_form_content_type("application/x-www-form-urlencoded"));
        assert!(is_form_content_type(
            "application/x-www-form-urlencoded; charset=UTF-8"
        ));
        assert!(is_form_content_type(
            "Application/X-WWW-Form-Urlencoded;charset=\"utf-8\""
        ));
        assert!(is_form_content_type("application/x-www-form-urlencoded;"));
        assert!(!is_form_content_type(
            "application/x-www-form-urlencoded; charset=iso-8859-1"
        ));
        assert!(!is_form_content_type("application/json"));
        assert!(!is_form_content_type("multipart/form-data; boundary=x"));
        assert!(!is_form_content_type(""));
    }
}
