//! JWT-SVID validation as an OAuth client assertion (draft-ietf-oauth-spiffe-client-auth-02 §3.1,
//! SPIFFE JWT-SVID standard; requirements JWT, AUD, TIME).
//!
//! Two steps. [`JwtSvid::decode`] checks the compact JWS structure, the header and the claims
//! without any key: it yields the `sub` so the caller can pick the bundle of that trust domain
//! and nothing else (JWT-12, JWT-15). [`JwtSvid::verify`] then checks the claims against the
//! policy and the signature against the trust domain's `jwt-svid` keys with the `kid` the token
//! names. Time is passed in; the core never reads a clock.

use crate::b64;
use crate::bundle::{JwtKey, KeyMaterial, TrustBundle};
use crate::log_text::quote;
use crate::spiffe_id::{SpiffeId, SpiffeIdError};
use crate::strict_json::{self, JsonError};
use serde_json::{Map, Value};
use sha2::{Sha256, Sha384, Sha512};
use std::fmt;

/// JWS algorithms a JWT-SVID may use (JWT-SVID §2.1; JWT-4). Names are case-sensitive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    RS256,
    RS384,
    RS512,
    ES256,
    ES384,
    ES512,
    PS256,
    PS384,
    PS512,
}

impl Alg {
    fn parse(name: &str) -> Option<Alg> {
        Some(match name {
            "RS256" => Alg::RS256,
            "RS384" => Alg::RS384,
            "RS512" => Alg::RS512,
            "ES256" => Alg::ES256,
            "ES384" => Alg::ES384,
            "ES512" => Alg::ES512,
            "PS256" => Alg::PS256,
            "PS384" => Alg::PS384,
            "PS512" => Alg::PS512,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Alg::RS256 => "RS256",
            Alg::RS384 => "RS384",
            Alg::RS512 => "RS512",
            Alg::ES256 => "ES256",
            Alg::ES384 => "ES384",
            Alg::ES512 => "ES512",
            Alg::PS256 => "PS256",
            Alg::PS384 => "PS384",
            Alg::PS512 => "PS512",
        }
    }

    /// Exact signature length for ECDSA (raw R‖S, RFC 7518 §3.4; JWT-7).
    fn ecdsa_signature_len(self) -> Option<usize> {
        match self {
            Alg::ES256 => Some(64),
            Alg::ES384 => Some(96),
            Alg::ES512 => Some(132),
            _ => None,
        }
    }

    /// Whether a key can verify this algorithm (JWT-5: curve bound to alg, RSA for RS/PS).
    fn fits(self, key: &KeyMaterial) -> bool {
        matches!(
            (self, key),
            (Alg::ES256, KeyMaterial::P256(_))
                | (Alg::ES384, KeyMaterial::P384(_))
                | (Alg::ES512, KeyMaterial::P521(_))
                | (
                    Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256 | Alg::PS384 | Alg::PS512,
                    KeyMaterial::Rsa { .. }
                )
        )
    }
}

/// Header members a JWT-SVID may carry (JWT-SVID §2). Anything else — `crit`, `jku`, `jwk`,
/// `x5u`, `x5c`, … — is refused (JWT-10), so no key or URL is ever taken from the token.
const ALLOWED_HEADER_MEMBERS: [&str; 3] = ["alg", "kid", "typ"];

/// Why an assertion was refused. The variant names go to the log, never to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwtSvidError {
    TooLong,
    NotCompactJws,
    BadBase64,
    HeaderJson(JsonError),
    ClaimsJson(JsonError),
    AlgMissing,
    AlgNotAllowed(String),
    HeaderMemberNotAllowed(String),
    KidNotString,
    TypNotAllowed(String),
    SignatureLength,
    SubMissing,
    SubInvalid(SpiffeIdError),
    SubIsTrustDomainId,
    AudMissing,
    AudMalformed,
    AudMismatch,
    ExpMissing,
    TimeClaimNotNumber(&'static str),
    Expired,
    NotYetValid,
    IssuedInFuture,
    KidMissing,
    UnknownKid(String),
    NoKeyFitsAlg,
    BadSignature,
    /// A registered claim of the wrong type (`"iss": 42`; RFC 7519 §4.1).
    ClaimNotString(&'static str),
}

impl fmt::Display for JwtSvidError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use JwtSvidError::*;
        match self {
            TooLong => f.write_str("assertion longer than the configured maximum"),
            NotCompactJws => f.write_str("not a compact JWS with three segments"),
            BadBase64 => f.write_str("segment is not canonical unpadded base64url"),
            HeaderJson(e) => write!(f, "header: {e}"),
            ClaimsJson(e) => write!(f, "claims: {e}"),
            AlgMissing => f.write_str("header has no alg"),
            AlgNotAllowed(a) => write!(f, "alg {} is not allowed for JWT-SVIDs", quote(a)),
            HeaderMemberNotAllowed(m) => write!(f, "header member {} is not allowed", quote(m)),
            KidNotString => f.write_str("kid is not a string"),
            TypNotAllowed(t) => write!(f, "typ {} is not JWT or JOSE", quote(t)),
            SignatureLength => f.write_str("signature has the wrong length for alg"),
            SubMissing => f.write_str("sub is missing or not a string"),
            SubInvalid(e) => write!(f, "sub is not a SPIFFE ID: {e}"),
            SubIsTrustDomainId => f.write_str("sub is a trust domain ID without a path"),
            AudMissing => f.write_str("aud is missing or empty"),
            AudMalformed => f.write_str("aud is not a string or an array of strings"),
            AudMismatch => f.write_str("aud is not exactly the issuer identifier"),
            ExpMissing => f.write_str("exp is missing"),
            TimeClaimNotNumber(c) => write!(f, "{c} is not a non-negative number"),
            Expired => f.write_str("expired"),
            NotYetValid => f.write_str("nbf is in the future"),
            IssuedInFuture => f.write_str("iat is in the future"),
            KidMissing => f.write_str("header has no kid"),
            UnknownKid(k) => write!(
                f,
                "kid {} is not a jwt-svid key of the trust domain",
                quote(k)
            ),
            NoKeyFitsAlg => f.write_str("no key with this kid fits the alg"),
            BadSignature => f.write_str("signature does not verify"),
            ClaimNotString(c) => write!(f, "{c} is not a string"),
        }
    }
}

/// What the validator needs to know besides the token.
#[derive(Debug, Clone)]
pub struct JwtSvidPolicy<'a> {
    /// The AS issuer identifier: the only accepted audience (AUD-2 … AUD-5).
    pub audience: &'a str,
    /// Clock skew tolerated on `exp`, `nbf` and `iat` (TIME-2, TIME-4, TIME-5).
    pub leeway_secs: u64,
}

/// A structurally valid JWT-SVID whose signature and claims are not yet checked.
#[derive(Debug, Clone)]
pub struct JwtSvid<'t> {
    token: &'t str,
    alg: Alg,
    kid: Option<String>,
    sub: SpiffeId,
    aud: Vec<String>,
    exp: u64,
    nbf: Option<u64>,
    iat: Option<u64>,
}

impl<'t> JwtSvid<'t> {
    /// Checks structure, header and claim types (JWT-1 … JWT-4, JWT-7, JWT-9, JWT-10, JWT-14,
    /// AUD-1, AUD-6, TIME-1, TIME-3). `max_len` bounds all work before splitting (REQ-12).
    pub fn decode(token: &'t str, max_len: usize) -> Result<Self, JwtSvidError> {
        if token.len() > max_len {
            return Err(JwtSvidError::TooLong);
        }
        let mut parts = token.split('.');
        let (Some(h64), Some(c64), Some(s64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtSvidError::NotCompactJws);
        };
        let header = b64::decode_url(h64).ok_or(JwtSvidError::BadBase64)?;
        let claims = b64::decode_url(c64).ok_or(JwtSvidError::BadBase64)?;
        let signature = b64::decode_url(s64).ok_or(JwtSvidError::BadBase64)?;

        let header = strict_json::parse_object(&header).map_err(JwtSvidError::HeaderJson)?;
        let (alg, kid) = check_header(&header)?;
        match alg.ecdsa_signature_len() {
            Some(len) if signature.len() != len => return Err(JwtSvidError::SignatureLength),
            None if signature.is_empty() => return Err(JwtSvidError::SignatureLength),
            _ => {}
        }

        let claims = strict_json::parse_object(&claims).map_err(JwtSvidError::ClaimsJson)?;
        let sub = match claims.get("sub") {
            Some(Value::String(s)) => SpiffeId::parse(s).map_err(JwtSvidError::SubInvalid)?,
            _ => return Err(JwtSvidError::SubMissing),
        };
        let aud = audiences(claims.get("aud"))?;
        // Registered claims this profile does not use must still have their RFC 7519 types.
        for name in ["iss", "jti"] {
            if claims.get(name).is_some_and(|v| !v.is_string()) {
                return Err(JwtSvidError::ClaimNotString(name));
            }
        }
        let exp = time_claim(&claims, "exp")?.ok_or(JwtSvidError::ExpMissing)?;
        let nbf = time_claim(&claims, "nbf")?;
        let iat = time_claim(&claims, "iat")?;
        Ok(JwtSvid {
            token,
            alg,
            kid,
            sub,
            aud,
            exp,
            nbf,
            iat,
        })
    }

    /// The claimed SPIFFE ID. Untrusted until [`verify`](Self::verify) succeeds: use it only to
    /// choose the trust domain's bundle.
    pub fn subject(&self) -> &SpiffeId {
        &self.sub
    }

    /// The first second (Unix) at which this token counts as expired, with `leeway_secs` of
    /// clock skew: a verdict reached earlier holds until then (TIME-2).
    pub fn valid_until(&self, leeway_secs: u64) -> u64 {
        self.exp.saturating_add(leeway_secs)
    }

    /// Checks the claims at `now` (Unix seconds) and the signature against `bundle`, which must
    /// be the bundle of the subject's trust domain. Returns the verified SPIFFE ID.
    pub fn verify(
        &self,
        bundle: &TrustBundle,
        policy: &JwtSvidPolicy<'_>,
        now: u64,
    ) -> Result<SpiffeId, JwtSvidError> {
        self.check_claims(policy, now)?;
        // Key selection by exact kid among this trust domain's jwt-svid keys only (JWT-11, JWT-13).
        let kid = self.kid.as_deref().ok_or(JwtSvidError::KidMissing)?;
        let mut candidates = bundle.jwt_keys_with_kid(kid).peekable();
        if candidates.peek().is_none() {
            return Err(JwtSvidError::UnknownKid(kid.to_owned()));
        }
        let mut fitting = candidates
            .filter(|key| self.alg.fits(&key.material))
            .filter(|key| key.alg.as_deref().is_none_or(|a| a == self.alg.name()))
            .peekable();
        if fitting.peek().is_none() {
            return Err(JwtSvidError::NoKeyFitsAlg);
        }
        // Duplicate kids are all tried (BUN-15); any one verifying is enough.
        let mut outcome = Err(JwtSvidError::BadSignature);
        for key in fitting {
            outcome = self.check_signature(key);
            if outcome.is_ok() {
                break;
            }
        }
        outcome.map(|()| self.sub.clone())
    }

    fn check_claims(&self, policy: &JwtSvidPolicy<'_>, now: u64) -> Result<(), JwtSvidError> {
        if self.sub.is_trust_domain_id() {
            return Err(JwtSvidError::SubIsTrustDomainId);
        }
        // Sole value, simple string comparison (AUD-2, AUD-4).
        if self.aud.len() != 1 || self.aud.first().map(String::as_str) != Some(policy.audience) {
            return Err(JwtSvidError::AudMismatch);
        }
        let leeway = policy.leeway_secs;
        if now >= self.exp.saturating_add(leeway) {
            return Err(JwtSvidError::Expired);
        }
        if self.nbf.is_some_and(|nbf| now.saturating_add(leeway) < nbf) {
            return Err(JwtSvidError::NotYetValid);
        }
        if self.iat.is_some_and(|iat| iat > now.saturating_add(leeway)) {
            return Err(JwtSvidError::IssuedInFuture);
        }
        Ok(())
    }

    /// Verifies the JWS signature (RFC 7515 §5.2) over the signing input with the RustCrypto
    /// verifiers: ECDSA with the raw `r ‖ s` signature (RFC 7518 §3.4), RSASSA-PKCS1-v1_5
    /// (§3.3), RSASSA-PSS with the salt as long as the hash (§3.5).
    fn check_signature(&self, key: &JwtKey) -> Result<(), JwtSvidError> {
        use p256::ecdsa::signature::Verifier;
        let (signing_input, s64) = self
            .token
            .rsplit_once('.')
            .ok_or(JwtSvidError::NotCompactJws)?;
        let sig = b64::decode_url(s64).ok_or(JwtSvidError::BadBase64)?;
        let msg = signing_input.as_bytes();
        let verified = match (&key.material, self.alg) {
            (KeyMaterial::P256(vk), Alg::ES256) => p256::ecdsa::Signature::from_slice(&sig)
                .is_ok_and(|sig| vk.verify(msg, &sig).is_ok()),
            (KeyMaterial::P384(vk), Alg::ES384) => p384::ecdsa::Signature::from_slice(&sig)
                .is_ok_and(|sig| vk.verify(msg, &sig).is_ok()),
            (KeyMaterial::P521(vk), Alg::ES512) => p521::ecdsa::Signature::from_slice(&sig)
                .is_ok_and(|sig| vk.verify(msg, &sig).is_ok()),
            (KeyMaterial::Rsa(pk), Alg::RS256) => rsa_pkcs1::<Sha256>(pk, msg, &sig),
            (KeyMaterial::Rsa(pk), Alg::RS384) => rsa_pkcs1::<Sha384>(pk, msg, &sig),
            (KeyMaterial::Rsa(pk), Alg::RS512) => rsa_pkcs1::<Sha512>(pk, msg, &sig),
            (KeyMaterial::Rsa(pk), Alg::PS256) => rsa_pss::<Sha256>(pk, msg, &sig),
            (KeyMaterial::Rsa(pk), Alg::PS384) => rsa_pss::<Sha384>(pk, msg, &sig),
            (KeyMaterial::Rsa(pk), Alg::PS512) => rsa_pss::<Sha512>(pk, msg, &sig),
            _ => return Err(JwtSvidError::NoKeyFitsAlg),
        };
        if verified {
            Ok(())
        } else {
            Err(JwtSvidError::BadSignature)
        }
    }
}

/// RSASSA-PKCS1-v1_5 with hash `D`.
fn rsa_pkcs1<D>(key: &rsa::PublicKey, msg: &[u8], sig: &[u8]) -> bool
where
    D: sha2::Digest + sha2::digest::const_oid::AssociatedOid + sha2::digest::FixedOutputReset,
{
    use rsa::signature::Verifier;
    rsa::pkcs1v15::Signature::try_from(sig).is_ok_and(|sig| {
        rsa::pkcs1v15::VerifyingKey::<D>::new(key.clone())
            .verify(msg, &sig)
            .is_ok()
    })
}

/// RSASSA-PSS with hash `D`, MGF1 with `D`, and a salt as long as `D`'s output.
fn rsa_pss<D>(key: &rsa::PublicKey, msg: &[u8], sig: &[u8]) -> bool
where
    D: sha2::Digest + sha2::digest::FixedOutputReset,
{
    use rsa::signature::Verifier;
    rsa::pss::Signature::try_from(sig).is_ok_and(|sig| {
        rsa::pss::VerifyingKey::<D>::new(key.clone())
            .verify(msg, &sig)
            .is_ok()
    })
}

/// The header's `alg` and `kid`, once every member is known and well-typed.
fn check_header(header: &Map<String, Value>) -> Result<(Alg, Option<String>), JwtSvidError> {
    // alg first: nothing else is looked at for a token with a forbidden algorithm (JWT-4).
    let alg = match header.get("alg") {
        Some(Value::String(a)) => {
            Alg::parse(a).ok_or_else(|| JwtSvidError::AlgNotAllowed(a.clone()))?
        }
        Some(other) => return Err(JwtSvidError::AlgNotAllowed(other.to_string())),
        None => return Err(JwtSvidError::AlgMissing),
    };
    if let Some(name) = header
        .keys()
        .find(|k| !ALLOWED_HEADER_MEMBERS.contains(&k.as_str()))
    {
        return Err(JwtSvidError::HeaderMemberNotAllowed(name.clone()));
    }
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(k)) => Some(k.clone()),
        Some(_) => return Err(JwtSvidError::KidNotString),
    };
    match header.get("typ") {
        None => {}
        Some(Value::String(t)) if t == "JWT" || t == "JOSE" => {}
        Some(other) => return Err(JwtSvidError::TypNotAllowed(other.to_string())),
    }
    Ok((alg, kid))
}

fn audiences(aud: Option<&Value>) -> Result<Vec<String>, JwtSvidError> {
    match aud {
        None => Err(JwtSvidError::AudMissing),
        Some(Value::String(s)) if s.is_empty() => Err(JwtSvidError::AudMissing),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(items)) if items.is_empty() => Err(JwtSvidError::AudMissing),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or(JwtSvidError::AudMalformed)
            })
            .collect(),
        Some(_) => Err(JwtSvidError::AudMalformed),
    }
}

/// A NumericDate: a JSON number, fractions floored (requirements OPEN-5), never negative.
fn time_claim(
    claims: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<u64>, JwtSvidError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(v) = n.as_u64() {
                Ok(Some(v))
            } else {
                match n.as_f64() {
                    Some(f) if f >= 0.0 && f < u64::MAX as f64 => Ok(Some(f.floor() as u64)),
                    _ => Err(JwtSvidError::TimeClaimNotNumber(name)),
                }
            }
        }
        Some(_) => Err(JwtSvidError::TimeClaimNotNumber(name)),
    }
}

#[cfg(test)]
mod differential;
#[cfg(test)]
mod tests;
