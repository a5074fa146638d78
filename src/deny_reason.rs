//! Why a token request was denied, as a small fixed set: every rejection carries one, so that
//! metrics can count denials by reason with a bounded number of series, and an operator can
//! tell from them alone what is going wrong (the log line adds the details).

use crate::jwt_svid::JwtSvidError;

/// The reason class of a rejection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DenyReason {
    /// The request itself is malformed: content type, form body, a missing parameter.
    MalformedRequest,
    /// More than one client authentication method, or two identities (RFC 6749 §2.3, REQ-9/10).
    MixedMethods,
    /// The body is over `limits.max_body_bytes`.
    BodyTooLarge,
    /// The JWT-SVID is not a well-formed JWT-SVID (structure, encoding, header, claim types).
    MalformedAssertion,
    /// Past `exp` (plus the leeway).
    Expired,
    /// Before `nbf`, or issued in the future.
    NotYetValid,
    /// `aud` missing or not exactly the issuer.
    Audience,
    /// The bundle has no key with the JWT-SVID's `kid` (or none that fits its `alg`).
    UnknownKey,
    /// The signature does not verify.
    Signature,
    /// The SPIFFE ID's trust domain is not configured.
    UnknownTrustDomain,
    /// The trust domain has no bundle yet.
    NoBundle,
    /// The trust domain's last good bundle is older than the maximum staleness.
    StaleBundle,
    /// The client certificate is not a valid X509-SVID of its trust domain.
    InvalidCertificate,
    /// The SPIFFE ID is not registered as a client.
    UnregisteredClient,
    /// The request's `client_id` is not the client the SVID authenticates.
    ClientIdMismatch,
    /// Host time unavailable: nothing time-bound can be checked.
    NoHostTime,
}

impl DenyReason {
    /// Every reason, for listing the metrics in advance.
    pub const ALL: [DenyReason; 16] = [
        DenyReason::MalformedRequest,
        DenyReason::MixedMethods,
        DenyReason::BodyTooLarge,
        DenyReason::MalformedAssertion,
        DenyReason::Expired,
        DenyReason::NotYetValid,
        DenyReason::Audience,
        DenyReason::UnknownKey,
        DenyReason::Signature,
        DenyReason::UnknownTrustDomain,
        DenyReason::NoBundle,
        DenyReason::StaleBundle,
        DenyReason::InvalidCertificate,
        DenyReason::UnregisteredClient,
        DenyReason::ClientIdMismatch,
        DenyReason::NoHostTime,
    ];

    /// The name in metric names and log lines.
    pub fn as_str(self) -> &'static str {
        match self {
            DenyReason::MalformedRequest => "malformed_request",
            DenyReason::MixedMethods => "mixed_methods",
            DenyReason::BodyTooLarge => "body_too_large",
            DenyReason::MalformedAssertion => "malformed_assertion",
            DenyReason::Expired => "expired",
            DenyReason::NotYetValid => "not_yet_valid",
            DenyReason::Audience => "audience",
            DenyReason::UnknownKey => "unknown_key",
            DenyReason::Signature => "signature",
            DenyReason::UnknownTrustDomain => "unknown_trust_domain",
            DenyReason::NoBundle => "no_bundle",
            DenyReason::StaleBundle => "stale_bundle",
            DenyReason::InvalidCertificate => "invalid_certificate",
            DenyReason::UnregisteredClient => "unregistered_client",
            DenyReason::ClientIdMismatch => "client_id_mismatch",
            DenyReason::NoHostTime => "no_host_time",
        }
    }
}

impl From<&JwtSvidError> for DenyReason {
    fn from(e: &JwtSvidError) -> Self {
        use JwtSvidError::*;
        match e {
            Expired => DenyReason::Expired,
            NotYetValid | IssuedInFuture => DenyReason::NotYetValid,
            AudMissing | AudMalformed | AudMismatch => DenyReason::Audience,
            UnknownKid(_) | NoKeyFitsAlg => DenyReason::UnknownKey,
            BadSignature | SignatureLength => DenyReason::Signature,
            TooLong
            | NotCompactJws
            | BadBase64
            | HeaderJson(_)
            | ClaimsJson(_)
            | AlgMissing
            | AlgNotAllowed(_)
            | HeaderMemberNotAllowed(_)
            | KidNotString
            | TypNotAllowed(_)
            | SubMissing
            | SubInvalid(_)
            | SubIsTrustDomainId
            | ExpMissing
            | TimeClaimNotNumber(_)
            | KidMissing
            | ClaimNotString(_) => DenyReason::MalformedAssertion,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn names_are_distinct_metric_name_segments() {
        let names: HashSet<&str> = DenyReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(names.len(), DenyReason::ALL.len());
        for name in names {
            assert!(
                name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{name}"
            );
        }
    }

    #[test]
    fn jwt_svid_errors_map_to_their_class() {
        assert_eq!(
            DenyReason::from(&JwtSvidError::Expired),
            DenyReason::Expired
        );
        assert_eq!(
            DenyReason::from(&JwtSvidError::IssuedInFuture),
            DenyReason::NotYetValid
        );
        assert_eq!(
            DenyReason::from(&JwtSvidError::AudMismatch),
            DenyReason::Audience
        );
        assert_eq!(
            DenyReason::from(&JwtSvidError::UnknownKid("k".into())),
            DenyReason::UnknownKey
        );
        assert_eq!(
            DenyReason::from(&JwtSvidError::BadSignature),
            DenyReason::Signature
        );
        assert_eq!(
            DenyReason::from(&JwtSvidError::KidMissing),
            DenyReason::MalformedAssertion
        );
    }
}
