//! SPIFFE IDs and trust domain names, parsed with the strict grammar of the SPIFFE-ID standard.
//!
//! The raw string is checked as it is: no URL parser, no case folding, no percent-decoding, no
//! dot-segment resolution (requirements ID-1 … ID-8). Comparison is byte for byte (CID-6).

use std::fmt;

/// Longest SPIFFE ID accepted (SPIFFE-ID §2.3 requires support up to 2048 bytes; longer is refused).
pub const MAX_ID_BYTES: usize = 2048;
/// Longest trust domain name accepted (SPIFFE-ID §2.3).
pub const MAX_TRUST_DOMAIN_BYTES: usize = 255;

const SCHEME: &str = "spiffe://";

/// Why a string is not a SPIFFE ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpiffeIdError {
    Empty,
    TooLong,
    WrongScheme,
    EmptyTrustDomain,
    TrustDomainTooLong,
    BadTrustDomainChar,
    EmptySegment,
    DotSegment,
    TrailingSlash,
    BadPathChar,
}

impl fmt::Display for SpiffeIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            SpiffeIdError::Empty => "empty",
            SpiffeIdError::TooLong => "longer than 2048 bytes",
            SpiffeIdError::WrongScheme => "scheme is not \"spiffe://\"",
            SpiffeIdError::EmptyTrustDomain => "trust domain is empty",
            SpiffeIdError::TrustDomainTooLong => "trust domain is longer than 255 bytes",
            SpiffeIdError::BadTrustDomainChar => {
                "trust domain has a character outside a-z 0-9 . - _"
            }
            SpiffeIdError::EmptySegment => "path has an empty segment",
            SpiffeIdError::DotSegment => "path has a . or .. segment",
            SpiffeIdError::TrailingSlash => "path ends with /",
            SpiffeIdError::BadPathChar => "path has a character outside a-z A-Z 0-9 . - _",
        };
        f.write_str(s)
    }
}

/// A trust domain name such as `example.org` (lowercase letters, digits, `.`, `-`, `_`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrustDomain(String);

impl TrustDomain {
    /// Parses a bare trust domain name (as written in configuration).
    pub fn parse(name: &str) -> Result<Self, SpiffeIdError> {
        check_trust_domain(name)?;
        Ok(TrustDomain(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Lets maps keyed by trust domain be searched with the name a SPIFFE ID carries (the derived
/// ordering is the string's, so this is consistent).
impl std::borrow::Borrow<str> for TrustDomain {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A syntactically valid SPIFFE ID, kept exactly as received.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    id: String,
    /// Byte length of the trust domain (which starts right after `spiffe://`).
    td_len: usize,
}

impl SpiffeId {
    /// Parses a SPIFFE ID with the strict grammar.
    pub fn parse(s: &str) -> Result<Self, SpiffeIdError> {
        if s.is_empty() {
            return Err(SpiffeIdError::Empty);
        }
        if s.len() > MAX_ID_BYTES {
            return Err(SpiffeIdError::TooLong);
        }
        let rest = s.strip_prefix(SCHEME).ok_or(SpiffeIdError::WrongScheme)?;
        let (td, path) = match rest.find('/') {
            Some(at) => rest.split_at(at),
            None => (rest, ""),
        };
        check_trust_domain(td)?;
        check_path(path)?;
        Ok(SpiffeId {
            id: s.to_owned(),
            td_len: td.len(),
        })
    }

    /// The whole ID.
    pub fn as_str(&self) -> &str {
        &self.id
    }

    /// The trust domain name.
    pub fn trust_domain_name(&self) -> &str {
        self.id
            .get(SCHEME.len()..SCHEME.len() + self.td_len)
            .unwrap_or_default()
    }

    /// The path, empty for a trust-domain ID.
    pub fn path(&self) -> &str {
        self.id
            .get(SCHEME.len() + self.td_len..)
            .unwrap_or_default()
    }

    /// True when the ID has no path (`spiffe://example.org`): valid syntax, but never a
    /// workload identity (CID-7, X509-6).
    pub fn is_trust_domain_id(&self) -> bool {
        self.path().is_empty()
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id)
    }
}

fn check_trust_domain(td: &str) -> Result<(), SpiffeIdError> {
    if td.is_empty() {
        return Err(SpiffeIdError::EmptyTrustDomain);
    }
    if td.len() > MAX_TRUST_DOMAIN_BYTES {
        return Err(SpiffeIdError::TrustDomainTooLong);
    }
    let ok = td
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_'));
    if ok {
        Ok(())
    } else {
        Err(SpiffeIdError::BadTrustDomainChar)
    }
}

fn check_path(path: &str) -> Result<(), SpiffeIdError> {
    if path.is_empty() {
        return Ok(());
    }
    if path.ends_with('/') {
        return Err(SpiffeIdError::TrailingSlash);
    }
    // `path` starts with '/', so the first split item is the empty string before it.
    for segment in path.split('/').skip(1) {
        if segment.is_empty() {
            return Err(SpiffeIdError::EmptySegment);
        }
        if segment == "." || segment == ".." {
            return Err(SpiffeIdError::DotSegment);
        }
        let ok = segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
        if !ok {
            return Err(SpiffeIdError::BadPathChar);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (xorshift64*), so differential runs are repeatable.
    struct Gen(u64);

    impl Gen {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            items[(self.next() % items.len() as u64) as usize]
        }
    }

    /// ID-1 … ID-9, differential: our parser against the `spiffe` crate (an independent
    /// implementation of the same SPIFFE-ID grammar) on generated IDs built from the pieces
    /// that matter (scheme spellings, trust domain characters, ports, userinfo, dot segments,
    /// empty segments, percent signs, query and fragment, lengths near the limits). Known
    /// differences, excluded from the comparison and pinned below: the crate accepts upper-case
    /// letters in the scheme and the trust domain (`SPIFFE://`, `Example.org`), which ID-1 and
    /// ID-2 refuse, as go-spiffe does (OPEN-1); and IDs over
    /// MAX_ID_BYTES (2048, the SPIFFE-ID spec's limit) are ours to refuse.
    #[test]
    fn id_differential_against_the_spiffe_crate() {
        let schemes = [
            "spiffe://",
            "spiffe://",
            "spiffe://",
            "SPIFFE://",
            "spiffe:/",
            "https://",
            "",
        ];
        let tds = [
            "example.org",
            "example.org",
            "a",
            "td-1.example",
            "Example.org",
            "exa mple",
            "ex_ample",
            "example.org:8080",
            "u@example.org",
            "",
            "é.example",
            "x.",
            ".x",
            "a..b",
            "1.2.3.4",
            "[::1]",
            "-a",
            "a-",
            "%41",
        ];
        let segments = [
            "a", "workload", "ns-1", "A_B.c", ".", "..", "", "%20", "a b", "é", "~x", "a:b", "a@b",
            "a?q", "a#f", "+", "...",
        ];
        let mut g = Gen(0x5eed_1234_abcd_0042);
        let (mut agree, mut accepted) = (0, 0);
        for _ in 0..20_000 {
            let mut id = format!("{}{}", g.pick(&schemes), g.pick(&tds));
            for _ in 0..(g.next() % 4) {
                id.push('/');
                id.push_str(g.pick(&segments));
            }
            if g.next().is_multiple_of(50) {
                id.push('/');
                id.push_str(&"x".repeat((g.next() % 2100) as usize));
            }
            let authority_end = id.find("//").map_or(0, |at| {
                id[at + 2..].find('/').map_or(id.len(), |end| at + 2 + end)
            });
            let upper_case = id[..authority_end].chars().any(|c| c.is_ascii_uppercase());
            if id.len() > MAX_ID_BYTES || upper_case {
                continue;
            }
            let ours = SpiffeId::parse(&id).is_ok();
            let theirs = spiffe::SpiffeId::new(&id).is_ok();
            assert_eq!(ours, theirs, "{id:?}");
            agree += 1;
            accepted += usize::from(ours);
        }
        assert!(
            agree > 15_000 && accepted > 1_000 && accepted < agree,
            "{agree} {accepted}"
        );
        // The known difference, pinned: ID-1 refuses what the crate accepts.
        for id in ["SPIFFE://example.org/x", "spiffe://Example.org/x"] {
            assert!(spiffe::SpiffeId::new(id).is_ok(), "{id}");
            assert!(SpiffeId::parse(id).is_err(), "{id}");
        }
    }

    /// Requirements §4.1, valid list (ID-1, ID-3, ID-5, ID-6, ID-7).
    #[test]
    fn id_vectors_valid() {
        // §4.1 writes `"spiffe://example.org/" + "a"*2028`, which is 2049 bytes; the intent is
        // an ID of exactly 2048 bytes, which needs 2027.
        let long = format!("spiffe://example.org/{}", "a".repeat(2027));
        assert_eq!(long.len(), 2048);
        let valid = [
            "spiffe://example.org/my-oauth-client",
            "spiffe://example.org",
            "spiffe://k8s-west.example.com/ns/staging/sa/default",
            "spiffe://staging.example.com/payments/mysql",
            "spiffe://example.com/9eebccd2-12bf-40a6-b262-65fe0487d453",
            "spiffe://trust_domain.example.com/Payments/MySQL",
            "spiffe://127.0.0.1/workload",
            "spiffe://a/b",
            "spiffe://example.org/.hidden",
            "spiffe://example.org/..path",
            "spiffe://example.org/...",
            "spiffe://-/x",
            "spiffe://.../x",
            long.as_str(),
        ];
        for s in valid {
            let id = SpiffeId::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(id.as_str(), s);
        }
    }

    /// Requirements §4.1, invalid list: scheme (ID-1), empty trust domain (ID-2), trust domain
    /// characters (ID-3), path characters (ID-4), empty and dot segments, trailing slash (ID-5),
    /// lengths (ID-7), nothing normalised (ID-8); the grammar half of FC-27.
    #[test]
    fn id_vectors_invalid() {
        let long_td = format!("spiffe://{}/x", "a".repeat(256));
        let too_long = format!("spiffe://example.org/{}", "a".repeat(2028));
        let cases: &[(&str, SpiffeIdError)] = &[
            ("", SpiffeIdError::Empty),
            ("spiffe://", SpiffeIdError::EmptyTrustDomain),
            ("spiffe:///path", SpiffeIdError::EmptyTrustDomain),
            ("spiffe:/example.org/x", SpiffeIdError::WrongScheme),
            ("SPIFFE://example.org/x", SpiffeIdError::WrongScheme),
            ("Spiffe://example.org/x", SpiffeIdError::WrongScheme),
            ("https://example.org/x", SpiffeIdError::WrongScheme),
            ("xspiffe://example.org/x", SpiffeIdError::WrongScheme),
            ("spiffe://Example.org/x", SpiffeIdError::BadTrustDomainChar),
            ("spiffe://EXAMPLE.org/x", SpiffeIdError::BadTrustDomainChar),
            (
                "spiffe://example.org:8443/x",
                SpiffeIdError::BadTrustDomainChar,
            ),
            (
                "spiffe://user@example.org/x",
                SpiffeIdError::BadTrustDomainChar,
            ),
            ("spiffe://[::1]/x", SpiffeIdError::BadTrustDomainChar),
            (
                "spiffe://ex%61mple.org/x",
                SpiffeIdError::BadTrustDomainChar,
            ),
            ("spiffe://exämple.org/x", SpiffeIdError::BadTrustDomainChar),
            ("spiffe://example.org/%41", SpiffeIdError::BadPathChar),
            ("spiffe://example.org/x?y=1", SpiffeIdError::BadPathChar),
            ("spiffe://example.org/x#frag", SpiffeIdError::BadPathChar),
            ("spiffe://example.org/", SpiffeIdError::TrailingSlash),
            ("spiffe://example.org/x/", SpiffeIdError::TrailingSlash),
            ("spiffe://example.org//x", SpiffeIdError::EmptySegment),
            ("spiffe://example.org/x//y", SpiffeIdError::EmptySegment),
            ("spiffe://example.org/.", SpiffeIdError::DotSegment),
            ("spiffe://example.org/..", SpiffeIdError::DotSegment),
            ("spiffe://example.org/./x", SpiffeIdError::DotSegment),
            ("spiffe://example.org/x/../y", SpiffeIdError::DotSegment),
            (
                "spiffe://example.org/a/%2E%2E/b",
                SpiffeIdError::BadPathChar,
            ),
            ("spiffe://example.org/x y", SpiffeIdError::BadPathChar),
            ("spiffe://example.org/ä", SpiffeIdError::BadPathChar),
            ("spiffe://example.org/x:y", SpiffeIdError::BadPathChar),
            ("spiffe://example.org/x@y", SpiffeIdError::BadPathChar),
            ("spiffe://example.org/x~y", SpiffeIdError::BadPathChar),
            (" spiffe://example.org/x", SpiffeIdError::WrongScheme),
            ("spiffe://example.org/x\n", SpiffeIdError::BadPathChar),
            (long_td.as_str(), SpiffeIdError::TrustDomainTooLong),
            (too_long.as_str(), SpiffeIdError::TooLong),
        ];
        for (s, want) in cases {
            assert_eq!(SpiffeId::parse(s), Err(*want), "{s:?}");
        }
    }

    #[test]
    fn id_parts_and_root_id() {
        let id = SpiffeId::parse("spiffe://example.org/ns/a").unwrap();
        assert_eq!(id.trust_domain_name(), "example.org");
        assert_eq!(id.path(), "/ns/a");
        assert!(!id.is_trust_domain_id());
        let root = SpiffeId::parse("spiffe://example.org").unwrap();
        assert_eq!(root.trust_domain_name(), "example.org");
        assert!(root.is_trust_domain_id());
    }

    /// ID-6 / CID-6: the path is case-sensitive and compared byte for byte.
    #[test]
    fn id_6_path_is_case_sensitive() {
        let a = SpiffeId::parse("spiffe://example.org/a").unwrap();
        let upper = SpiffeId::parse("spiffe://example.org/A").unwrap();
        assert_ne!(a, upper);
    }

    #[test]
    fn trust_domain_names() {
        assert_eq!(
            TrustDomain::parse("example.org").unwrap().as_str(),
            "example.org"
        );
        assert_eq!(TrustDomain::parse("my_td").unwrap().as_str(), "my_td");
        assert_eq!(TrustDomain::parse(""), Err(SpiffeIdError::EmptyTrustDomain));
        assert_eq!(
            TrustDomain::parse("Example.org"),
            Err(SpiffeIdError::BadTrustDomainChar)
        );
        assert_eq!(
            TrustDomain::parse("spiffe://example.org"),
            Err(SpiffeIdError::BadTrustDomainChar)
        );
    }
}
