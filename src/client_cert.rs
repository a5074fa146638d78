//! The client certificate chain of an mTLS connection, as Envoy exposes it to a filter: the
//! leaf from the connection (`connection.peer_certificate`, PEM, with its SHA-256 digest) and
//! the intermediates from the `x-forwarded-client-cert` header's `Chain=` (set by the HTTP
//! connection manager with `forward_client_cert_details: SANITIZE_SET`), used only when that
//! chain starts with the connection's own leaf (requirements REQ-11, EDGE-1, EDGE-2).

use crate::credential_cache::{CredentialCache, CredentialDigest};
use crate::x509_svid;
use sha2::{Digest, Sha256};
use std::cell::OnceCell;
use std::fmt;

/// Most certificates read from one XFCC chain: the leaf, the most intermediates validation
/// accepts, and one more, so an overlong chain is refused by validation, not silently cut.
const MAX_CHAIN: usize = x509_svid::MAX_INTERMEDIATES + 2;

/// What the connection presented. What is derived from it (the verified-credential cache key,
/// whether the leaf claims a SPIFFE ID) is computed once per chain: a chain read once per
/// connection serves all of the connection's requests.
#[derive(Debug, Clone)]
pub struct PresentedChain {
    /// DER of the leaf, byte for byte as the client sent it.
    leaf: Vec<u8>,
    /// DER of the client-sent intermediates (possibly none).
    intermediates: Vec<Vec<u8>>,
    cache_key: OnceCell<CredentialDigest>,
    claims_spiffe_id: OnceCell<bool>,
}

impl PresentedChain {
    pub fn new(leaf: Vec<u8>, intermediates: Vec<Vec<u8>>) -> Self {
        PresentedChain {
            leaf,
            intermediates,
            cache_key: OnceCell::new(),
            claims_spiffe_id: OnceCell::new(),
        }
    }

    pub fn leaf(&self) -> &[u8] {
        &self.leaf
    }

    pub fn intermediates(&self) -> &[Vec<u8>] {
        &self.intermediates
    }

    /// The chain's key in the verified-credential cache.
    pub fn cache_key(&self) -> &CredentialDigest {
        self.cache_key
            .get_or_init(|| CredentialCache::chain_digest(&self.leaf, &self.intermediates))
    }

    /// Whether the leaf claims a SPIFFE ID ([`x509_svid::claims_spiffe_id`]).
    pub fn claims_spiffe_id(&self) -> bool {
        *self
            .claims_spiffe_id
            .get_or_init(|| x509_svid::claims_spiffe_id(&self.leaf))
    }
}

/// Two chains are equal when they hold the same certificates.
impl PartialEq for PresentedChain {
    fn eq(&self, other: &Self) -> bool {
        self.leaf == other.leaf && self.intermediates == other.intermediates
    }
}

impl Eq for PresentedChain {}

/// Why the presented certificate cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientCertError {
    /// mTLS, but the host gave no leaf certificate.
    NoLeaf,
    /// The leaf is not one PEM certificate.
    LeafPem,
    /// The leaf's SHA-256 differs from the digest the host reports for the connection.
    DigestMismatch,
}

impl fmt::Display for ClientCertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientCertError::NoLeaf => f.write_str("mTLS connection without a peer certificate"),
            ClientCertError::LeafPem => f.write_str("peer certificate is not one PEM certificate"),
            ClientCertError::DigestMismatch => {
                f.write_str("peer certificate does not match the connection's digest")
            }
        }
    }
}

/// Reads the presented chain. `mtls` is `connection.mtls`: without it nothing counts as
/// presented, whatever headers say (a client-sent XFCC is never evidence, REQ-11).
/// `xfcc` is the connection manager's `x-forwarded-client-cert` value, if any.
pub fn presented_chain(
    mtls: bool,
    leaf_pem: Option<&str>,
    leaf_sha256_hex: Option<&str>,
    xfcc: Option<&str>,
) -> Result<Option<PresentedChain>, ClientCertError> {
    if !mtls {
        return Ok(None);
    }
    let leaf_pem = leaf_pem.ok_or(ClientCertError::NoLeaf)?;
    let leaf = match pem_certificates(leaf_pem).as_slice() {
        [one] => one.clone(),
        _ => return Err(ClientCertError::LeafPem),
    };
    let digest = hex(&Sha256::digest(&leaf));
    if leaf_sha256_hex.is_some_and(|d| !d.eq_ignore_ascii_case(&digest)) {
        return Err(ClientCertError::DigestMismatch);
    }
    let intermediates = xfcc
        .and_then(|value| xfcc_chain(value, &digest))
        .and_then(|chain| match chain.split_first() {
            Some((first, rest)) if *first == leaf => Some(rest.to_vec()),
            _ => None,
        })
        .unwrap_or_default();
    Ok(Some(PresentedChain::new(leaf, intermediates)))
}

/// The decoded `Chain=` of the XFCC element whose `Hash=` is `digest`.
fn xfcc_chain(value: &str, digest: &str) -> Option<Vec<Vec<u8>>> {
    split_unquoted(value, ',').into_iter().find_map(|element| {
        let mut hash = None;
        let mut chain = None;
        for pair in split_unquoted(element, ';') {
            let (key, raw) = pair.split_once('=')?;
            let raw = raw.trim();
            let raw = raw
                .strip_prefix('"')
                .and_then(|r| r.strip_suffix('"'))
                .unwrap_or(raw);
            match key.trim().to_ascii_lowercase().as_str() {
                "hash" => hash = Some(raw),
                "chain" => chain = Some(raw),
                _ => {}
            }
        }
        if !hash?.eq_ignore_ascii_case(digest) {
            return None;
        }
        let pem = String::from_utf8(percent_decode(chain?)?).ok()?;
        let certs = pem_certificates(&pem);
        (!certs.is_empty()).then_some(certs)
    })
}

/// Splits on `sep` outside double quotes (a backslash escapes the next character inside them).
fn split_unquoted(s: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                parts.push(s.get(start..i).unwrap_or_default());
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(s.get(start..).unwrap_or_default());
    parts
}

/// Strict `%XX` decoding; `None` on a malformed escape.
fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hi = (bytes.next()? as char).to_digit(16)?;
            let lo = (bytes.next()? as char).to_digit(16)?;
            out.push(u8::try_from(hi << 4 | lo).ok()?);
        } else {
            out.push(b);
        }
    }
    Some(out)
}

/// The DER of every `CERTIFICATE` PEM block in `text`, in order; unparsable blocks are dropped.
fn pem_certificates(text: &str) -> Vec<Vec<u8>> {
    const END: &str = "-----END CERTIFICATE-----";
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(begin) = rest.find("-----BEGIN CERTIFICATE-----") {
        let Some(block) = rest.get(begin..) else {
            break;
        };
        let Some(end) = block.find(END) else { break };
        let (pem, after) = block.split_at(end + END.len());
        if let Ok((label, der)) = x509_cert::der::pem::decode_vec(pem.as_bytes()) {
            if label == "CERTIFICATE" {
                out.push(der);
            }
        }
        rest = after;
        if out.len() >= MAX_CHAIN {
            break;
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests;
