//! X509-SVID validation (draft-02 §3.2, SPIFFE X509-SVID standard; requirements X509-1 …
//! X509-14): the leaf profile checked with `x509-cert`, then RFC 5280 path validation by
//! `rustls-webpki` against the `x509-svid` authorities of the leaf's own trust domain only.
//!
//! The caller picks the authorities from the SPIFFE ID that [`leaf_spiffe_id`] returns, so a
//! trust domain's roots never vouch for another trust domain's IDs (EDGE-3, X509-1). Time is
//! passed in.

use crate::spiffe_id::{SpiffeId, SpiffeIdError};
use crate::x509_sig_algs;
use rustls_pki_types::{CertificateDer, UnixTime};
use std::fmt;
use std::time::Duration;
use x509_cert::der::Decode;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage, SubjectAltName};
use x509_cert::Certificate;

/// Longest chain accepted from a client: leaf plus this many intermediates.
pub const MAX_INTERMEDIATES: usize = 8;

/// Why an X509-SVID was refused (for the log; the client only learns `invalid_client`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum X509SvidError {
    /// The leaf is not a parsable DER certificate.
    Unparsable,
    /// An extension the leaf profile needs appears twice or does not decode.
    BadExtension(&'static str),
    NoUriSan,
    MultipleUriSans,
    SanNotSpiffeId(SpiffeIdError),
    /// The SPIFFE ID has no path (X509-6).
    TrustDomainId,
    LeafIsCa,
    NoKeyUsage,
    NoDigitalSignature,
    /// keyCertSign or cRLSign on a leaf (X509-5).
    SigningKeyUsage,
    TooManyIntermediates,
    /// A client-sent intermediate is not a signing certificate: no CA=true, or a key usage
    /// without keyCertSign (X509-8; webpki checks basic constraints but not key usage).
    IntermediateNotSigning(usize),
    /// The trust domain has no `x509-svid` authorities (BUN-12).
    NoAuthorities,
    /// RFC 5280 path validation failed; webpki's reason.
    Path(String),
}

impl fmt::Display for X509SvidError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use X509SvidError::*;
        match self {
            Unparsable => f.write_str("leaf is not a DER certificate"),
            BadExtension(e) => write!(f, "{e} extension is repeated or malformed"),
            NoUriSan => f.write_str("leaf has no URI SAN"),
            MultipleUriSans => f.write_str("leaf has more than one URI SAN"),
            SanNotSpiffeId(e) => write!(f, "URI SAN is not a SPIFFE ID: {e}"),
            TrustDomainId => f.write_str("URI SAN is a trust domain ID without a path"),
            LeafIsCa => f.write_str("leaf has CA=true"),
            NoKeyUsage => f.write_str("leaf has no key usage extension"),
            NoDigitalSignature => f.write_str("leaf key usage lacks digitalSignature"),
            SigningKeyUsage => f.write_str("leaf key usage has keyCertSign or cRLSign"),
            TooManyIntermediates => write!(f, "more than {MAX_INTERMEDIATES} intermediates"),
            IntermediateNotSigning(i) => {
                write!(f, "intermediate {i} lacks CA=true or keyCertSign")
            }
            NoAuthorities => f.write_str("trust domain has no x509-svid authority valid now"),
            Path(e) => write!(f, "path validation failed: {e}"),
        }
    }
}

/// Whether the leaf claims a SPIFFE identity: a URI SAN that mentions `spiffe:` anywhere, in
/// any case (`spiffe://…`, `SPIFFE://…`, `xspiffe://…`, `https://h/spiffe://…`: readers that
/// search for the scheme inside the string exist, FC-27). Such a certificate is an X509-SVID
/// attempt and is validated (and refused unless it is a valid one); any other client
/// certificate is not this filter's business. A leaf or a subjectAltName extension that cannot
/// be read counts as a claim: what cannot be read cannot be ruled out, and TLS stacks accept SAN
/// forms this parser does not (an `x400Address` beside a SPIFFE URI must not hide it).
pub fn claims_spiffe_id(leaf_der: &[u8]) -> bool {
    let Ok(cert) = Certificate::from_der(leaf_der) else {
        return true;
    };
    let mut claims = false;
    for extension in cert.tbs_certificate().filter_extensions::<SubjectAltName>() {
        let Ok((_, san)) = extension else {
            return true;
        };
        claims |= san.0.iter().any(|name| {
            matches!(name, GeneralName::UniformResourceIdentifier(uri)
                if uri.as_str().to_ascii_lowercase().contains("spiffe:"))
        });
    }
    claims
}

/// Checks the leaf profile (X509-2 … X509-6) and returns its SPIFFE ID. Untrusted until
/// [`verify`] succeeds: use it to choose the trust domain's authorities.
pub fn leaf_spiffe_id(leaf_der: &[u8]) -> Result<SpiffeId, X509SvidError> {
    let cert = Certificate::from_der(leaf_der).map_err(|_| X509SvidError::Unparsable)?;
    let tbs = cert.tbs_certificate();

    let san = tbs
        .get_extension::<SubjectAltName>()
        .map_err(|_| X509SvidError::BadExtension("subjectAltName"))?;
    let mut uris = san
        .iter()
        .flat_map(|(_, san)| san.0.iter())
        .filter_map(|name| match name {
            GeneralName::UniformResourceIdentifier(uri) => Some(uri.as_str()),
            _ => None,
        });
    let uri = uris.next().ok_or(X509SvidError::NoUriSan)?;
    if uris.next().is_some() {
        return Err(X509SvidError::MultipleUriSans);
    }
    let id = SpiffeId::parse(uri).map_err(X509SvidError::SanNotSpiffeId)?;
    if id.is_trust_domain_id() {
        return Err(X509SvidError::TrustDomainId);
    }

    let ca = tbs
        .get_extension::<BasicConstraints>()
        .map_err(|_| X509SvidError::BadExtension("basicConstraints"))?
        .is_some_and(|(_, bc)| bc.ca);
    if ca {
        return Err(X509SvidError::LeafIsCa);
    }
    let (_, usage) = tbs
        .get_extension::<KeyUsage>()
        .map_err(|_| X509SvidError::BadExtension("keyUsage"))?
        .ok_or(X509SvidError::NoKeyUsage)?;
    if !usage.digital_signature() {
        return Err(X509SvidError::NoDigitalSignature);
    }
    if usage.key_cert_sign() || usage.crl_sign() {
        return Err(X509SvidError::SigningKeyUsage);
    }
    Ok(id)
}

/// Validates the path from `leaf_der` through the client-sent `intermediates` to one of
/// `authorities` (the DER roots of the leaf's trust domain) at `now` (Unix seconds), with
/// signatures, validity, basic constraints, path length, unknown critical extensions and the
/// clientAuth EKU when an EKU is present (webpki). Name constraints: webpki enforces DNS/IP ones
/// and rejects any URI name constraint, so a chain carrying one fails closed (X509-10).
pub fn verify(
    leaf_der: &[u8],
    intermediates: &[Vec<u8>],
    authorities: &[Vec<u8>],
    now: u64,
) -> Result<SpiffeId, X509SvidError> {
    verify_path(leaf_der, intermediates, authorities, now).map(|v| v.spiffe_id)
}

/// What [`verify_path`] found: the leaf's SPIFFE ID and whether the validated path went through
/// every intermediate the client sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedSvid {
    pub spiffe_id: SpiffeId,
    /// False when the client sent intermediates that are not on the path (unused or repeated):
    /// the chain is valid, but its bytes are not the only spelling of this credential.
    pub every_intermediate_used: bool,
}

/// [`verify`], also saying whether the path used every intermediate the client sent.
pub fn verify_path(
    leaf_der: &[u8],
    intermediates: &[Vec<u8>],
    authorities: &[Vec<u8>],
    now: u64,
) -> Result<VerifiedSvid, X509SvidError> {
    let id = leaf_spiffe_id(leaf_der)?;
    if intermediates.len() > MAX_INTERMEDIATES {
        return Err(X509SvidError::TooManyIntermediates);
    }
    for (i, der) in intermediates.iter().enumerate() {
        if !is_signing_certificate(der, id.trust_domain_name()) {
            return Err(X509SvidError::IntermediateNotSigning(i));
        }
    }
    // An authority outside its own validity window is no anchor: webpki does not look at an
    // anchor's dates (RFC 5280 §6.1.1 leaves that to the relying party), go-spiffe (Go's
    // x509) and OpenSSL refuse such a chain, and so do we (X509-11, fail closed).
    let root_ders: Vec<CertificateDer<'_>> = authorities
        .iter()
        .filter(|der| valid_at(der, now))
        .map(|der| CertificateDer::from(der.as_slice()))
        .collect();
    // An authority webpki cannot use as an anchor is skipped, not fatal (BUN-6 spirit).
    let anchors: Vec<_> = root_ders
        .iter()
        .filter_map(|der| webpki::anchor_from_trusted_cert(der).ok())
        .collect();
    if anchors.is_empty() {
        return Err(X509SvidError::NoAuthorities);
    }
    let intermediates: Vec<CertificateDer<'_>> = intermediates
        .iter()
        .map(|der| CertificateDer::from(der.as_slice()))
        .collect();
    let leaf = CertificateDer::from(leaf_der);
    let end_entity = webpki::EndEntityCert::try_from(&leaf)
        .map_err(|e| X509SvidError::Path(format!("{e:?}")))?;
    let path = end_entity
        .verify_for_usage(
            x509_sig_algs::ALL,
            &anchors,
            &intermediates,
            UnixTime::since_unix_epoch(Duration::from_secs(now)),
            webpki::KeyUsage::client_auth(),
            None,
            None,
        )
        .map_err(|e| X509SvidError::Path(format!("{e:?}")))?;
    // Sent certificates that are the trust domain's own authorities (a client sending its root
    // along) count as used: only certificates off the path make another spelling.
    // A certificate sent twice is another spelling too.
    let on_path: Vec<Vec<u8>> = path
        .intermediate_certificates()
        .map(|c| c.der().to_vec())
        .collect();
    let every_intermediate_used = intermediates.iter().enumerate().all(|(i, der)| {
        let repeated = intermediates.iter().take(i).any(|earlier| earlier == der);
        let der: &[u8] = der.as_ref();
        let known = |certs: &[Vec<u8>]| certs.iter().any(|c| c.as_slice() == der);
        !repeated && (known(&on_path) || known(authorities))
    });
    Ok(VerifiedSvid {
        spiffe_id: id,
        every_intermediate_used,
    })
}

/// The first second (Unix) at which a chain that [`verify`] accepted at `now` may no longer be
/// valid: one past the earliest `notAfter` of the leaf, the intermediates and every authority
/// valid at `now` (whichever of them anchored the path). `now` when a certificate cannot be read.
pub fn valid_until(
    leaf_der: &[u8],
    intermediates: &[Vec<u8>],
    authorities: &[Vec<u8>],
    now: u64,
) -> u64 {
    let anchors = authorities.iter().filter(|der| valid_at(der, now));
    std::iter::once(leaf_der)
        .chain(intermediates.iter().map(Vec::as_slice))
        .chain(anchors.map(Vec::as_slice))
        .map(|der| validity_secs(der).map_or(now, |(_, not_after)| not_after.saturating_add(1)))
        .min()
        .unwrap_or(now)
}

/// Whether a certificate's validity window contains `now` (Unix seconds).
fn valid_at(der: &[u8], now: u64) -> bool {
    validity_secs(der).is_some_and(|(not_before, not_after)| not_before <= now && now <= not_after)
}

/// A certificate's `notBefore` and `notAfter` in Unix seconds.
fn validity_secs(der: &[u8]) -> Option<(u64, u64)> {
    let cert = Certificate::from_der(der).ok()?;
    let validity = cert.tbs_certificate().validity();
    let secs = |t: &x509_cert::time::Time| t.to_unix_duration().as_secs();
    Some((secs(&validity.not_before), secs(&validity.not_after)))
}

/// A signing certificate per the X509-SVID profile (X509-8): CA=true, a key usage with
/// keyCertSign, and any SPIFFE ID it carries is `trust_domain`'s own, without a path (strict:
/// a CA naming a workload, or another trust domain, does not sign this trust domain's SVIDs).
fn is_signing_certificate(der: &[u8], trust_domain: &str) -> bool {
    let Ok(cert) = Certificate::from_der(der) else {
        return false;
    };
    let tbs = cert.tbs_certificate();
    let ca = matches!(tbs.get_extension::<BasicConstraints>(), Ok(Some((_, bc))) if bc.ca);
    let cert_sign =
        matches!(tbs.get_extension::<KeyUsage>(), Ok(Some((_, ku))) if ku.key_cert_sign());
    let own_id = format!("spiffe://{trust_domain}");
    let ids_ok = tbs
        .filter_extensions::<SubjectAltName>()
        .all(|san| match san {
            Ok((_, san)) => san.0.iter().all(|name| match name {
                GeneralName::UniformResourceIdentifier(uri) => {
                    let uri = uri.as_str();
                    !uri.get(..7)
                        .is_some_and(|s| s.eq_ignore_ascii_case("spiffe:"))
                        || uri == own_id
                }
                _ => true,
            }),
            Err(_) => false,
        });
    ca && cert_sign && ids_ok
}

#[cfg(test)]
mod differential;
#[cfg(test)]
mod tests;
