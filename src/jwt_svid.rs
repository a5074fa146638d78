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
use jwt_simple::prelude::*;
use serde_json::{Map, Value};
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
    /// jwt-simple refused the token for another reason than its signature, e.g. a claim it
    /// cannot read (`"iss": 42`).
    VerifierRejected(String),
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
            VerifierRejected(e) => write!(f, "refused by the signature verifier: {e}"),
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
    typ: Option<String>,
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
        let (alg, kid, typ) = check_header(&header)?;
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
        let exp = time_claim(&claims, "exp")?.ok_or(JwtSvidError::ExpMissing)?;
        let nbf = time_claim(&claims, "nbf")?;
        let iat = time_claim(&claims, "iat")?;
        Ok(JwtSvid {
            token,
            alg,
            kid,
            typ,
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
            outcome = self.check_signature(key, policy, now);
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

    /// Verifies the signature with jwt-simple (ES256/ES384/RS*/PS*) or the RustCrypto P-521
    /// verifier (ES512, which jwt-simple does not implement). jwt-simple re-checks the time claims
    /// with the same clock and leeway; our checks above are at least as strict.
    fn check_signature(
        &self,
        key: &JwtKey,
        policy: &JwtSvidPolicy<'_>,
        now: u64,
    ) -> Result<(), JwtSvidError> {
        let options = VerificationOptions {
            artificial_time: Some(UnixTimeStamp::from_secs(now)),
            time_tolerance: Some(Duration::from_secs(policy.leeway_secs)),
            // jwt-simple only lets "JWT" and "*+JWT" through by default; our own header check
            // already restricted typ to JWT/JOSE (JWT-9), so require exactly what was sent.
            required_signature_type: self.typ.clone(),
            max_token_length: None,
            ..VerificationOptions::default()
        };
        let token = self.token;
        let (n, e) = match &key.material {
            KeyMaterial::P256(pk) if self.alg == Alg::ES256 => {
                return verdict(pk.verify_token::<NoCustomClaims>(token, Some(options)))
            }
            KeyMaterial::P384(pk) if self.alg == Alg::ES384 => {
                return verdict(pk.verify_token::<NoCustomClaims>(token, Some(options)))
            }
            KeyMaterial::P521(vk) if self.alg == Alg::ES512 => return self.check_es512(vk),
            KeyMaterial::Rsa { n, e } => (n, e),
            _ => return Err(JwtSvidError::NoKeyFitsAlg),
        };
        let options = Some(options);
        match self.alg {
            Alg::RS256 => verdict(
                RS256PublicKey::from_components(n, e).and_then(|k| k.verify_token(token, options)),
            ),
            Alg::RS384 => verdict(
                RS384PublicKey::from_components(n, e).and_then(|k| k.verify_token(token, options)),
            ),
            Alg::RS512 => verdict(
                RS512PublicKey::from_components(n, e).and_then(|k| k.verify_token(token, options)),
            ),
            Alg::PS256 => verdict(
                PS256PublicKey::from_components(n, e).and_then(|k| k.verify_token(token, options)),
            ),
            Alg::PS384 => verdict(
                PS384PublicKey::from_components(n, e).and_then(|k| k.verify_token(token, options)),
            ),
            Alg::PS512 => verdict(
                PS512PublicKey::from_components(n, e).and_then(|k| k.verify_token(token, options)),
            ),
            _ => Err(JwtSvidError::NoKeyFitsAlg),
        }
    }

    fn check_es512(&self, key: &p521::ecdsa::VerifyingKey) -> Result<(), JwtSvidError> {
        use p521::ecdsa::signature::Verifier;
        let (signing_input, s64) = self
            .token
            .rsplit_once('.')
            .ok_or(JwtSvidError::NotCompactJws)?;
        let sig = b64::decode_url(s64).ok_or(JwtSvidError::BadBase64)?;
        let sig =
            p521::ecdsa::Signature::from_slice(&sig).map_err(|_| JwtSvidError::BadSignature)?;
        key.verify(signing_input.as_bytes(), &sig)
            .map_err(|_| JwtSvidError::BadSignature)
    }
}

/// Maps jwt-simple's answer: a failed signature is `BadSignature`, anything else is reported
/// with jwt-simple's reason.
fn verdict(
    result: Result<JWTClaims<NoCustomClaims>, jwt_simple::Error>,
) -> Result<(), JwtSvidError> {
    match result {
        Ok(_) => Ok(()),
        Err(e) => match e.downcast_ref::<jwt_simple::JWTError>() {
            Some(jwt_simple::JWTError::InvalidSignature) => Err(JwtSvidError::BadSignature),
            _ => Err(JwtSvidError::VerifierRejected(e.to_string())),
        },
    }
}

type HeaderFields = (Alg, Option<String>, Option<String>);

fn check_header(header: &Map<String, Value>) -> Result<HeaderFields, JwtSvidError> {
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
    let typ = match header.get("typ") {
        None => None,
        Some(Value::String(t)) if t == "JWT" || t == "JOSE" => Some(t.clone()),
        Some(other) => return Err(JwtSvidError::TypNotAllowed(other.to_string())),
    };
    Ok((alg, kid, typ))
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
