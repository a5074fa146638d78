//! SPIFFE trust bundles: a JWK Set with `spiffe_sequence` and `spiffe_refresh_hint`, parsed
//! with the SPIFFE Trust Domain and Bundle rules (requirements BUN-1 … BUN-22).
//!
//! The document as a whole is refused only when it is structurally invalid (not a JSON object,
//! duplicate members, `keys` missing or not an array, a non-integer sequence or hint). A single
//! unusable entry (unknown `use` or `kty`, a `jwt-svid` key without `kid`, a malformed or weak
//! key, an `x509-svid` entry without `x5c`) is skipped and reported, and the rest of the bundle
//! stays usable: one bad JWK never poisons the set (field case FC-07).

use crate::b64;
use crate::strict_json::{self, JsonError};
use serde_json::{Map, Value};
use std::fmt;
use x509_cert::der::Decode;
use x509_cert::Certificate;

/// `use` value of JWT-SVID signing keys.
pub const USE_JWT_SVID: &str = "jwt-svid";
/// `use` value of X509-SVID authorities.
pub const USE_X509_SVID: &str = "x509-svid";

/// Most entries a bundle's `keys` may have. A trust domain publishes a handful (current and
/// next keys and authorities); the cap bounds the work one document can cause.
pub const MAX_BUNDLE_KEYS: usize = 1000;

/// Public key material of a `jwt-svid` entry, checked and ready to verify with: a point on
/// the curve, or an RSA key within [`RSA_JWT_BITS`] with an odd modulus and e = 65537 (its
/// Montgomery parameters computed once, when the bundle is parsed).
#[derive(Clone)]
pub enum KeyMaterial {
    P256(p256::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
    P521(p521::ecdsa::VerifyingKey),
    Rsa(Box<rsa::PublicKey>),
}

/// RSA modulus sizes accepted for JWT-SVID keys: RFC 7518 §3.3's floor, and a ceiling that
/// bounds the cost of one verification (JWT-6, BUN-6).
pub const RSA_JWT_BITS: std::ops::RangeInclusive<u32> = 2048..=4096;

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyMaterial::P256(_) => f.write_str("EC P-256"),
            KeyMaterial::P384(_) => f.write_str("EC P-384"),
            KeyMaterial::P521(_) => f.write_str("EC P-521"),
            KeyMaterial::Rsa(key) => {
                use rsa::traits::PublicKeyParts;
                write!(f, "RSA {} bits", key.n().bit_width())
            }
        }
    }
}

/// One JWT-SVID signing key of a trust domain.
#[derive(Debug, Clone)]
pub struct JwtKey {
    pub kid: String,
    /// The JWK's optional `alg` member; when present it must equal the token's `alg` (JWT-8).
    pub alg: Option<String>,
    pub material: KeyMaterial,
}

/// An entry of the document that was ignored, with the reason (for logs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedEntry {
    pub index: usize,
    pub reason: String,
}

/// A parsed trust bundle of one trust domain.
#[derive(Debug, Clone, Default)]
pub struct TrustBundle {
    /// Keys usable for JWT-SVIDs (`use: jwt-svid` only, BUN-13).
    pub jwt_keys: Vec<JwtKey>,
    /// DER of the first `x5c` certificate of each `use: x509-svid` entry (BUN-9, BUN-12).
    pub x509_authorities: Vec<Vec<u8>>,
    pub sequence: Option<u64>,
    /// Seconds; any integer is kept as sent and clamped by the refresh policy (BEP-3).
    pub refresh_hint: Option<i64>,
    pub skipped: Vec<SkippedEntry>,
}

/// Why a document is not a SPIFFE bundle at all (the fetch counts as failed; BEP-6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BundleError {
    Json(JsonError),
    KeysMissing,
    KeysNotArray,
    SequenceNotUnsignedInteger,
    RefreshHintNotInteger,
    TooManyKeys(usize),
}

impl fmt::Display for BundleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BundleError::Json(e) => write!(f, "{e}"),
            BundleError::KeysMissing => f.write_str("member \"keys\" is missing"),
            BundleError::KeysNotArray => f.write_str("member \"keys\" is not an array"),
            BundleError::SequenceNotUnsignedInteger => {
                f.write_str("\"spiffe_sequence\" is not an unsigned integer")
            }
            BundleError::RefreshHintNotInteger => {
                f.write_str("\"spiffe_refresh_hint\" is not an integer")
            }
            BundleError::TooManyKeys(n) => {
                write!(f, "{n} entries in \"keys\", more than {MAX_BUNDLE_KEYS}")
            }
        }
    }
}

impl TrustBundle {
    /// Parses a bundle document (UTF-8 JSON bytes as served by a bundle endpoint).
    pub fn parse(bytes: &[u8]) -> Result<TrustBundle, BundleError> {
        let doc = strict_json::parse_object(bytes).map_err(BundleError::Json)?;
        let keys = match doc.get("keys") {
            None => return Err(BundleError::KeysMissing),
            Some(Value::Array(keys)) => keys,
            Some(_) => return Err(BundleError::KeysNotArray),
        };
        if keys.len() > MAX_BUNDLE_KEYS {
            return Err(BundleError::TooManyKeys(keys.len()));
        }
        let sequence = match doc.get("spiffe_sequence") {
            None => None,
            Some(v) => Some(v.as_u64().ok_or(BundleError::SequenceNotUnsignedInteger)?),
        };
        let refresh_hint = match doc.get("spiffe_refresh_hint") {
            None => None,
            Some(v) => Some(v.as_i64().ok_or(BundleError::RefreshHintNotInteger)?),
        };
        let mut bundle = TrustBundle {
            sequence,
            refresh_hint,
            ..TrustBundle::default()
        };
        for (index, entry) in keys.iter().enumerate() {
            if let Err(reason) = bundle.add_entry(entry) {
                bundle.skipped.push(SkippedEntry { index, reason });
            }
        }
        Ok(bundle)
    }

    /// The JWT-SVID keys with this exact `kid` (case-sensitive; duplicates all kept, BUN-15).
    pub fn jwt_keys_with_kid<'a>(&'a self, kid: &'a str) -> impl Iterator<Item = &'a JwtKey> {
        self.jwt_keys.iter().filter(move |k| k.kid == kid)
    }

    fn add_entry(&mut self, entry: &Value) -> Result<(), String> {
        let jwk = entry.as_object().ok_or("entry is not a JSON object")?;
        match jwk.get("use").and_then(Value::as_str) {
            Some(USE_JWT_SVID) => {
                let key = parse_jwt_key(jwk)?;
                self.jwt_keys.push(key);
                Ok(())
            }
            Some(USE_X509_SVID) => {
                let der = parse_x509_authority(jwk)?;
                self.x509_authorities.push(der);
                Ok(())
            }
            Some(other) => Err(format!("use {other:?} is not used by this filter")),
            None => Err("no \"use\" member".to_owned()),
        }
    }
}

fn string_member<'a>(jwk: &'a Map<String, Value>, name: &str) -> Result<&'a str, String> {
    match jwk.get(name) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(format!("\"{name}\" is not a string")),
        None => Err(format!("\"{name}\" is missing")),
    }
}

fn b64url_member(jwk: &Map<String, Value>, name: &str) -> Result<Vec<u8>, String> {
    let s = string_member(jwk, name)?;
    b64::decode_url(s).ok_or_else(|| format!("\"{name}\" is not unpadded base64url"))
}

fn parse_jwt_key(jwk: &Map<String, Value>) -> Result<JwtKey, String> {
    if jwk.contains_key("d") {
        return Err("entry carries private key material \"d\"".to_owned());
    }
    let kid = string_member(jwk, "kid")?;
    if kid.is_empty() {
        return Err("\"kid\" is empty".to_owned());
    }
    let alg = match jwk.get("alg") {
        None => None,
        Some(Value::String(a)) => Some(a.clone()),
        Some(_) => return Err("\"alg\" is not a string".to_owned()),
    };
    let material = match string_member(jwk, "kty")? {
        "EC" => parse_ec_key(jwk)?,
        "RSA" => parse_rsa_key(jwk)?,
        other => return Err(format!("kty {other:?} is not supported")),
    };
    Ok(JwtKey {
        kid: kid.to_owned(),
        alg,
        material,
    })
}

/// The curve and SEC1 uncompressed point (`04 ‖ x ‖ y`) of an EC JWK, coordinates at full
/// length (RFC 7518 §6.2.1.2).
fn ec_point(jwk: &Map<String, Value>) -> Result<(&str, Vec<u8>), String> {
    let crv = string_member(jwk, "crv")?;
    let coordinate_len = match crv {
        "P-256" => 32,
        "P-384" => 48,
        "P-521" => 66,
        other => return Err(format!("crv {other:?} is not supported")),
    };
    let x = b64url_member(jwk, "x")?;
    let y = b64url_member(jwk, "y")?;
    if x.len() != coordinate_len || y.len() != coordinate_len {
        return Err(format!(
            "{crv} coordinates must be {coordinate_len} bytes (RFC 7518 §6.2.1.2)"
        ));
    }
    Ok((crv, [&[0x04][..], &x, &y].concat()))
}

fn parse_ec_key(jwk: &Map<String, Value>) -> Result<KeyMaterial, String> {
    let (crv, sec1) = ec_point(jwk)?;
    let invalid = || format!("{crv} point is not on the curve");
    Ok(match crv {
        "P-256" => KeyMaterial::P256(
            p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1).map_err(|_| invalid())?,
        ),
        "P-384" => KeyMaterial::P384(
            p384::ecdsa::VerifyingKey::from_sec1_bytes(&sec1).map_err(|_| invalid())?,
        ),
        _ => KeyMaterial::P521(
            p521::ecdsa::VerifyingKey::from_sec1_bytes(&sec1).map_err(|_| invalid())?,
        ),
    })
}

fn parse_rsa_key(jwk: &Map<String, Value>) -> Result<KeyMaterial, String> {
    let n = b64url_member(jwk, "n")?;
    let e = b64url_member(jwk, "e")?;
    let n = strip_leading_zeros(&n);
    let bits = n.first().map_or(0, |top| {
        (n.len() as u32).saturating_mul(8) - top.leading_zeros()
    });
    if !RSA_JWT_BITS.contains(&bits) {
        return Err(format!(
            "RSA key refused: {bits}-bit modulus, not within 2048 … 4096 bits"
        ));
    }
    if n.last().is_none_or(|low| low & 1 == 0) {
        return Err("RSA key refused: even modulus".to_owned());
    }
    if strip_leading_zeros(&e) != [1, 0, 1] {
        return Err("RSA key refused: exponent is not 65537".to_owned());
    }
    let key = rsa::PublicKey::new(
        rsa::BoxedUint::from_be_slice_vartime(n),
        rsa::BoxedUint::from_be_slice_vartime(&e),
    )
    .map_err(|err| format!("RSA key refused: {err}"))?;
    Ok(KeyMaterial::Rsa(Box::new(key)))
}

fn parse_x509_authority(jwk: &Map<String, Value>) -> Result<Vec<u8>, String> {
    let chain = match jwk.get("x5c") {
        Some(Value::Array(chain)) => chain,
        Some(_) => return Err("\"x5c\" is not an array".to_owned()),
        None => return Err("\"x5c\" is missing".to_owned()),
    };
    // Only the first certificate is the authority; any others are ignored (BUN-9).
    let first = match chain.first() {
        Some(Value::String(s)) => s,
        Some(_) => return Err("\"x5c\"[0] is not a string".to_owned()),
        None => return Err("\"x5c\" is empty".to_owned()),
    };
    let der = b64::decode_std(first).ok_or("\"x5c\"[0] is not standard base64")?;
    let cert = Certificate::from_der(&der).map_err(|_| "\"x5c\"[0] is not a DER certificate")?;
    // The certificate's key must be the key the JWK members describe (RFC 7517 §4.7; BUN-10).
    let cert_key = cert
        .tbs_certificate()
        .subject_public_key_info()
        .subject_public_key
        .raw_bytes();
    let matches = match string_member(jwk, "kty")? {
        "EC" => ec_point(jwk)?.1 == cert_key,
        "RSA" => {
            use rsa::pkcs1::DecodeRsaPublicKey;
            use rsa::traits::PublicKeyParts;
            let n = b64url_member(jwk, "n")?;
            let e = b64url_member(jwk, "e")?;
            rsa::PublicKey::from_pkcs1_der(cert_key).is_ok_and(|k| {
                strip_leading_zeros(&k.n().to_be_bytes()) == strip_leading_zeros(&n)
                    && strip_leading_zeros(&k.e().to_be_bytes()) == strip_leading_zeros(&e)
            })
        }
        other => return Err(format!("kty {other:?} is not supported")),
    };
    if !matches {
        return Err("\"x5c\"[0] key differs from the JWK's key members".to_owned());
    }
    Ok(der)
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    bytes.get(first..).unwrap_or_default()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures/go-spiffe");

    /// The go-spiffe test data is read where the project's shared folder puts it, beside the
    /// checkout (`../shared/fixtures/go-spiffe`), as its licence notes ask.
    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{FIXTURES}/{name}");
        std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{path}: {e}: the go-spiffe fixtures live in the shared folder beside the checkout"
            )
        })
    }

    /// Limits: a `keys` array of MAX_BUNDLE_KEYS entries is read, one more refuses the
    /// document (the last good bundle stays in use, BEP-6).
    #[test]
    fn limits_bundle_key_count() {
        let doc = |n: usize| {
            format!(
                r#"{{"keys":[{}]}}"#,
                vec![r#"{"use":"wit-svid"}"#; n].join(",")
            )
        };
        let at_limit = TrustBundle::parse(doc(MAX_BUNDLE_KEYS).as_bytes()).unwrap();
        assert_eq!(at_limit.skipped.len(), MAX_BUNDLE_KEYS);
        assert_eq!(
            TrustBundle::parse(doc(MAX_BUNDLE_KEYS + 1).as_bytes()).err(),
            Some(BundleError::TooManyKeys(MAX_BUNDLE_KEYS + 1))
        );
    }

    /// A valid P-256 JWK (the go-spiffe fixture's jwt-svid key) with the given kid.
    pub(crate) fn p256_jwk(kid: &str) -> String {
        format!(
            r#"{{"use":"jwt-svid","kty":"EC","kid":"{kid}","crv":"P-256","x":"ngLYQnlfF6GsojUwqtcEE3WgTNG2RUlsGhK73RNEl5k","y":"tKbiDSUSsQ3F1P7wteeHNXIcU-cx6CgSbroeQrQHTLM"}}"#
        )
    }

    fn parse(doc: &str) -> Result<TrustBundle, BundleError> {
        TrustBundle::parse(doc.as_bytes())
    }

    #[test]
    fn go_spiffe_valid_1_has_one_authority_and_one_jwt_key() {
        let b =
            TrustBundle::parse(&fixture("bundle_spiffebundle__spiffebundle_valid_1.json")).unwrap();
        assert_eq!(b.x509_authorities.len(), 1);
        assert_eq!(b.jwt_keys.len(), 1);
        assert_eq!(b.jwt_keys[0].kid, "C6vs25welZOx6WksNYfbMfiw9l96pMnD");
        assert!(matches!(b.jwt_keys[0].material, KeyMaterial::P256(_)));
        assert!(b.skipped.is_empty());
    }

    #[test]
    fn go_spiffe_valid_2_keeps_hint_and_sequence() {
        let b =
            TrustBundle::parse(&fixture("bundle_spiffebundle__spiffebundle_valid_2.json")).unwrap();
        let raw: Value =
            serde_json::from_slice(&fixture("bundle_spiffebundle__spiffebundle_valid_2.json"))
                .unwrap();
        assert_eq!(b.sequence, raw["spiffe_sequence"].as_u64());
        assert_eq!(b.refresh_hint, raw["spiffe_refresh_hint"].as_i64());
        assert!(b.sequence.is_some() && b.refresh_hint.is_some());
        assert!(b.skipped.is_empty(), "{:?}", b.skipped);
    }

    /// BUN-7 / B6: a kid-less jwt-svid entry is ignored, the rest is kept (go-spiffe rejects all).
    #[test]
    fn bun_7_go_spiffe_missing_kid_skips_only_that_entry() {
        let b = TrustBundle::parse(&fixture(
            "bundle_spiffebundle__spiffebundle_missing_kid.json",
        ))
        .unwrap();
        assert_eq!(b.jwt_keys.len(), 0);
        assert_eq!(b.x509_authorities.len(), 1);
        assert_eq!(b.skipped.len(), 1);
        assert_eq!(b.skipped[0].reason, "\"kid\" is missing");
    }

    /// BUN-1 / R1: no `keys` member → the document is invalid.
    #[test]
    fn bun_1_go_spiffe_no_keys_is_invalid() {
        let e = TrustBundle::parse(&fixture("bundle_spiffebundle__spiffebundle_no_keys.json"))
            .unwrap_err();
        assert_eq!(e, BundleError::KeysMissing);
    }

    /// BUN-13: a plain JWKS (no `use`) yields no JWT-SVID keys.
    #[test]
    fn bun_13_plain_jwks_has_no_jwt_svid_keys() {
        for name in [
            "bundle_jwtbundle__jwks_valid_1.json",
            "bundle_jwtbundle__jwks_missing_kid.json",
        ] {
            let b = TrustBundle::parse(&fixture(name)).unwrap();
            assert!(b.jwt_keys.is_empty(), "{name}");
            assert!(!b.skipped.is_empty(), "{name}");
            assert!(b.skipped.iter().all(|s| s.reason == "no \"use\" member"));
        }
    }

    /// §4.3 "accept as-is": the D-02 shape with a wit-svid key (BUN-14, WIT-0: wit-svid keys
    /// are ignored).
    #[test]
    fn bun_14_d02_shape_wit_key_ignored() {
        let x509 = x509_entry_fixture();
        let doc = format!(
            r#"{{"keys":[{x509},{},{{"use":"wit-svid","kty":"EC","kid":"w","crv":"P-256","x":"a","y":"b"}}],"spiffe_sequence":10,"spiffe_refresh_hint":300}}"#,
            p256_jwk("6d02Vc2oU62mXVH5nlggHGLmfIhrlnNW")
        );
        let b = parse(&doc).unwrap();
        assert_eq!(b.jwt_keys.len(), 1);
        assert_eq!(b.x509_authorities.len(), 1);
        assert_eq!(b.sequence, Some(10));
        assert_eq!(b.refresh_hint, Some(300));
        assert_eq!(b.skipped.len(), 1);
        assert_eq!(b.skipped[0].index, 2);
    }

    /// The x509-svid entry of go-spiffe's valid_1 bundle, re-serialised.
    fn x509_entry_fixture() -> String {
        let doc: Value =
            serde_json::from_slice(&fixture("bundle_spiffebundle__spiffebundle_valid_1.json"))
                .unwrap();
        doc["keys"][0].to_string()
    }

    /// BUN-2 / B1: an empty key list is a valid bundle (revocation). B2: a bundle without
    /// spiffe_sequence and spiffe_refresh_hint is valid.
    #[test]
    fn bun_2_empty_keys_is_valid_and_empty() {
        let b = parse(r#"{"keys":[]}"#).unwrap();
        assert!(b.jwt_keys.is_empty() && b.x509_authorities.is_empty());
        assert_eq!(b.sequence, None);
        assert_eq!(b.refresh_hint, None);
    }

    /// R1, R2, R3, R4: documents that are refused as a whole: no or non-array keys (BUN-1), a
    /// top-level array, HTML, empty or invalid UTF-8 (R2), non-integer hint or sequence (BUN-17,
    /// BUN-18), duplicate members (BUN-19); and the §4.3 ambiguous case pinned: a negative
    /// spiffe_sequence is refused, like go-spiffe. FC-07, FC-18: a failed fetch, never an
    /// empty trust set.
    #[test]
    fn bun_1_bun_17_bun_18_bun_19_invalid_documents() {
        let cases: &[(&str, BundleError)] = &[
            ("{}", BundleError::KeysMissing),
            (r#"{"keys":null}"#, BundleError::KeysNotArray),
            (r#"{"keys":{}}"#, BundleError::KeysNotArray),
            (r#"{"keys":{"a":1}}"#, BundleError::KeysNotArray),
            (r#"{"keys":"x"}"#, BundleError::KeysNotArray),
            (
                r#"[{"keys":[]}]"#,
                BundleError::Json(JsonError::NotAnObject),
            ),
            (
                r#"{"keys":[],"spiffe_refresh_hint":"300"}"#,
                BundleError::RefreshHintNotInteger,
            ),
            (
                r#"{"keys":[],"spiffe_refresh_hint":300.5}"#,
                BundleError::RefreshHintNotInteger,
            ),
            (
                r#"{"keys":[],"spiffe_sequence":"10"}"#,
                BundleError::SequenceNotUnsignedInteger,
            ),
            (
                r#"{"keys":[],"spiffe_sequence":10.5}"#,
                BundleError::SequenceNotUnsignedInteger,
            ),
            // Pinned decision (§4.3 "ambiguous"): a negative sequence is refused, like go-spiffe.
            (
                r#"{"keys":[],"spiffe_sequence":-1}"#,
                BundleError::SequenceNotUnsignedInteger,
            ),
            (
                r#"{"keys":[],"keys":[]}"#,
                BundleError::Json(JsonError::DuplicateMember("keys".into())),
            ),
        ];
        for (doc, want) in cases {
            assert_eq!(parse(doc).unwrap_err(), *want, "{doc}");
        }
        for garbage in [
            "",
            "<html><body>500</body></html>",
            "{\"keys\":[",
            "\u{feff}{}",
        ] {
            assert!(
                matches!(parse(garbage).unwrap_err(), BundleError::Json(_)),
                "{garbage:?}"
            );
        }
        assert!(matches!(
            TrustBundle::parse(b"{\"keys\":[],\"x\":\"\xff\"}").unwrap_err(),
            BundleError::Json(_)
        ));
    }

    /// BUN-17: a 64-bit sequence is kept without loss.
    #[test]
    fn bun_17_u64_sequence() {
        let b = parse(r#"{"keys":[],"spiffe_sequence":18446744073709551615}"#).unwrap();
        assert_eq!(b.sequence, Some(u64::MAX));
    }

    /// BUN-16 / B3: unknown top-level members are fine.
    #[test]
    fn bun_16_unknown_top_level_members() {
        let b = parse(&format!(r#"{{"keys":[{}],"foo":1}}"#, p256_jwk("k1"))).unwrap();
        assert_eq!(b.jwt_keys.len(), 1);
    }

    /// B4 / B5 / B6 / B10 / B11 / FC-07: entry-level skipping: unknown or missing use (BUN-4),
    /// unknown kty, never HMAC (BUN-5), malformed keys: short or off-curve EC, bad RSA, private
    /// members (BUN-6), no kid (BUN-7).
    #[test]
    fn bun_4_5_6_7_entries_skipped_rest_kept() {
        let good = p256_jwk("k1");
        let entries = [
            r#"{"use":"sig","kty":"EC","kid":"s","crv":"P-256","x":"a","y":"b"}"#.to_owned(),
            r#"{"use":"JWT-SVID","kty":"EC","kid":"u","crv":"P-256","x":"a","y":"b"}"#.to_owned(),
            r#"{"kty":"EC","kid":"n","crv":"P-256","x":"a","y":"b"}"#.to_owned(),
            r#"{"use":"jwt-svid","kty":"XYZ","kid":"z"}"#.to_owned(),
            r#"{"use":"jwt-svid","kty":"oct","kid":"o","k":"c2VjcmV0"}"#.to_owned(),
            r#"{"use":"jwt-svid","kty":"AKP","alg":"ML-DSA-44","kid":"pq-1","pub":"AAAA"}"#
                .to_owned(),
            r#"{"use":"jwt-svid","kty":"OKP","crv":"Ed448","kid":"ed-1","x":"AAAA"}"#.to_owned(),
            r#"{"use":"jwt-svid","kty":"RSA","kid":"r-bad","n":"AQAB==","e":"AQAB"}"#.to_owned(),
            // 31-byte x coordinate.
            r#"{"use":"jwt-svid","kty":"EC","kid":"short","crv":"P-256","x":"ngLYQnlfF6GsojUwqtcEE3WgTNG2RUlsGhK73RNEl","y":"tKbiDSUSsQ3F1P7wteeHNXIcU-cx6CgSbroeQrQHTLM"}"#.to_owned(),
            // Point not on the curve (y changed).
            r#"{"use":"jwt-svid","kty":"EC","kid":"off","crv":"P-256","x":"ngLYQnlfF6GsojUwqtcEE3WgTNG2RUlsGhK73RNEl5k","y":"tKbiDSUSsQ3F1P7wteeHNXIcU-cx6CgSbroeQrQHTLA"}"#.to_owned(),
            // Private key member present.
            r#"{"use":"jwt-svid","kty":"EC","kid":"priv","crv":"P-256","x":"ngLYQnlfF6GsojUwqtcEE3WgTNG2RUlsGhK73RNEl5k","y":"tKbiDSUSsQ3F1P7wteeHNXIcU-cx6CgSbroeQrQHTLM","d":"AAAA"}"#.to_owned(),
            r#""not an object""#.to_owned(),
            good,
        ];
        let doc = format!(r#"{{"keys":[{}],"spiffe_sequence":12}}"#, entries.join(","));
        let b = parse(&doc).unwrap();
        assert_eq!(b.jwt_keys.len(), 1, "{:?}", b.skipped);
        assert_eq!(b.jwt_keys[0].kid, "k1");
        assert_eq!(b.skipped.len(), entries.len() - 1);
        let reasons: Vec<&str> = b.skipped.iter().map(|s| s.reason.as_str()).collect();
        assert!(
            reasons.contains(&"kty \"XYZ\" is not supported"),
            "{reasons:?}"
        );
        assert!(
            reasons.contains(&"P-256 point is not on the curve"),
            "{reasons:?}"
        );
        assert!(reasons.contains(&"use \"sig\" is not used by this filter"));
    }

    /// BUN-8 / BUN-9 / BUN-10 / BUN-11 / B7 / B8 / B9 / B12 / B13.
    #[test]
    fn bun_8_to_11_x509_entries() {
        let doc: Value =
            serde_json::from_slice(&fixture("bundle_spiffebundle__spiffebundle_valid_1.json"))
                .unwrap();
        let entry = doc["keys"][0].clone();
        let root = entry["x5c"][0].as_str().unwrap().to_owned();
        let with = |change: &dyn Fn(&mut Value)| {
            let mut e = entry.clone();
            change(&mut e);
            parse(&format!(r#"{{"keys":[{e}]}}"#)).unwrap()
        };
        let skipped = |b: &TrustBundle| b.skipped.first().map(|s| s.reason.clone());
        // The fixture entry as it is: one authority, its DER.
        let b = with(&|_| {});
        assert_eq!(b.x509_authorities, vec![b64::decode_std(&root).unwrap()]);
        // B7: missing / empty x5c → skipped.
        let b = with(&|e| {
            e.as_object_mut().unwrap().remove("x5c");
        });
        assert!(b.x509_authorities.is_empty());
        assert_eq!(skipped(&b).as_deref(), Some("\"x5c\" is missing"));
        let b = with(&|e| e["x5c"] = serde_json::json!([]));
        assert_eq!(skipped(&b).as_deref(), Some("\"x5c\" is empty"));
        // B8: two certificates → only the first is an authority.
        let b = with(&|e| e["x5c"] = serde_json::json!([root, "AAAA"]));
        assert_eq!(b.x509_authorities, vec![b64::decode_std(&root).unwrap()]);
        // B9: a kid on an x509-svid entry is ignored; still an authority, never a JWT key.
        let b = with(&|e| e["kid"] = "foo".into());
        assert_eq!(b.x509_authorities.len(), 1);
        assert!(b.jwt_keys.is_empty());
        // B12: base64url alphabet, or not a certificate → skipped.
        let url_alphabet = root.replace('+', "-").replace('/', "_");
        assert_ne!(url_alphabet, root);
        let b = with(&|e| e["x5c"] = serde_json::json!([url_alphabet]));
        assert_eq!(
            skipped(&b).as_deref(),
            Some("\"x5c\"[0] is not standard base64")
        );
        let b = with(&|e| e["x5c"] = serde_json::json!(["MAA="]));
        assert_eq!(
            skipped(&b).as_deref(),
            Some("\"x5c\"[0] is not a DER certificate")
        );
        // B13 / BUN-10: the certificate's key differs from the JWK members → skipped.
        let b = with(&|e| e["y"] = b64::encode_url(&[7u8; 48]).into());
        assert!(b.x509_authorities.is_empty());
        assert_eq!(
            skipped(&b).as_deref(),
            Some("\"x5c\"[0] key differs from the JWK's key members")
        );
        let b = with(&|e| {
            e.as_object_mut().unwrap().remove("x");
        });
        assert_eq!(skipped(&b).as_deref(), Some("\"x\" is missing"));
    }

    /// BUN-15 / B14: duplicate kids are all kept.
    #[test]
    fn bun_15_duplicate_kids_kept() {
        let doc = format!(r#"{{"keys":[{},{}]}}"#, p256_jwk("k"), p256_jwk("k"));
        let b = parse(&doc).unwrap();
        assert_eq!(b.jwt_keys_with_kid("k").count(), 2);
        assert_eq!(b.jwt_keys_with_kid("K").count(), 0);
    }

    /// JWT-8: the JWK alg member is kept for the alg check.
    #[test]
    fn jwk_alg_member_kept() {
        let jwk = p256_jwk("k").replacen('{', r#"{"alg":"ES256","#, 1);
        let b = parse(&format!(r#"{{"keys":[{jwk}]}}"#)).unwrap();
        assert_eq!(b.jwt_keys[0].alg.as_deref(), Some("ES256"));
    }
}
