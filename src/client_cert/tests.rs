//! Reading the presented chain from Envoy's connection properties and XFCC header
//! (REQ-11, EDGE-1, EDGE-2).

use super::*;
use rcgen::{CertificateParams, IsCa, Issuer, KeyPair};

struct Pki {
    leaf_pem: String,
    mid_pem: String,
    other_pem: String,
}

fn pki() -> Pki {
    let root_key = KeyPair::generate().unwrap();
    let mut root = CertificateParams::new(Vec::<String>::new()).unwrap();
    root.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    root.self_signed(&root_key).unwrap();
    let mid_key = KeyPair::generate().unwrap();
    let mut mid = CertificateParams::new(Vec::<String>::new()).unwrap();
    mid.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let mid_cert = mid
        .signed_by(&mid_key, &Issuer::from_params(&root, &root_key))
        .unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["leaf.example.org".to_owned()]).unwrap();
    let leaf_cert = leaf
        .signed_by(&leaf_key, &Issuer::from_params(&mid, &mid_key))
        .unwrap();
    let other_key = KeyPair::generate().unwrap();
    let other = CertificateParams::new(vec!["other.example.org".to_owned()]).unwrap();
    let other_cert = other.self_signed(&other_key).unwrap();
    Pki {
        leaf_pem: leaf_cert.pem(),
        mid_pem: mid_cert.pem(),
        other_pem: other_cert.pem(),
    }
}

fn der(pem: &str) -> Vec<u8> {
    pem_certificates(pem).remove(0)
}

fn digest(pem: &str) -> String {
    hex(&Sha256::digest(der(pem)))
}

/// Percent-encodes everything but unreserved characters, as Envoy does in XFCC.
fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

fn xfcc(hash: &str, chain_pem: &str) -> String {
    format!(
        "By=spiffe://example.org/edge;Hash={hash};Cert=\"{}\";Chain=\"{}\";Subject=\"CN=a,O=b\";URI=spiffe://example.org/w",
        url_encode(chain_pem.split_inclusive("-----END CERTIFICATE-----\n").next().unwrap()),
        url_encode(chain_pem)
    )
}

#[test]
fn req_11_no_mtls_means_no_certificate_whatever_the_headers_say() {
    let p = pki();
    let header = xfcc(
        &digest(&p.leaf_pem),
        &format!("{}{}", p.leaf_pem, p.mid_pem),
    );
    assert_eq!(
        presented_chain(false, Some(&p.leaf_pem), None, Some(&header)),
        Ok(None)
    );
    assert_eq!(presented_chain(false, None, None, Some(&header)), Ok(None));
}

#[test]
fn leaf_from_the_connection_intermediates_from_a_matching_xfcc_chain() {
    let p = pki();
    let d = digest(&p.leaf_pem);
    let header = xfcc(&d, &format!("{}{}", p.leaf_pem, p.mid_pem));
    let got = presented_chain(true, Some(&p.leaf_pem), Some(&d), Some(&header))
        .unwrap()
        .unwrap();
    assert_eq!(got.leaf(), der(&p.leaf_pem));
    assert_eq!(got.intermediates(), vec![der(&p.mid_pem)]);
    // Without XFCC: the leaf alone.
    let alone = presented_chain(true, Some(&p.leaf_pem), Some(&d), None)
        .unwrap()
        .unwrap();
    assert!(alone.intermediates().is_empty());
    // The host's digest may be upper case.
    let upper = presented_chain(true, Some(&p.leaf_pem), Some(&d.to_uppercase()), None);
    assert!(upper.is_ok());
}

#[test]
fn xfcc_chain_ignored_unless_it_belongs_to_this_connection() {
    let p = pki();
    let d = digest(&p.leaf_pem);
    let chain = format!("{}{}", p.leaf_pem, p.mid_pem);
    let intermediates = |header: &str| {
        presented_chain(true, Some(&p.leaf_pem), Some(&d), Some(header))
            .unwrap()
            .unwrap()
            .intermediates()
            .to_vec()
    };
    // Another certificate's hash.
    assert!(intermediates(&xfcc(&digest(&p.other_pem), &chain)).is_empty());
    // The right hash, but a chain that starts with another leaf.
    assert!(intermediates(&xfcc(&d, &format!("{}{}", p.other_pem, p.mid_pem))).is_empty());
    // Malformed percent-encoding in Chain.
    assert!(intermediates(&format!("Hash={d};Chain=\"%ZZ\"")).is_empty());
    // Garbage.
    assert!(intermediates("\"unterminated;;==,,").is_empty());
    // A client-sent element before the connection manager's own: the matching one is used.
    let two = format!("Hash=00;Chain=\"x\",{}", xfcc(&d, &chain));
    assert_eq!(intermediates(&two), vec![der(&p.mid_pem)]);
}

#[test]
fn unusable_leaf() {
    let p = pki();
    assert_eq!(
        presented_chain(true, None, None, None),
        Err(ClientCertError::NoLeaf)
    );
    assert_eq!(
        presented_chain(true, Some("garbage"), None, None),
        Err(ClientCertError::LeafPem)
    );
    let two = format!("{}{}", p.leaf_pem, p.mid_pem);
    assert_eq!(
        presented_chain(true, Some(&two), None, None),
        Err(ClientCertError::LeafPem)
    );
    assert_eq!(
        presented_chain(true, Some(&p.leaf_pem), Some(&digest(&p.other_pem)), None),
        Err(ClientCertError::DigestMismatch)
    );
}

#[test]
fn quoted_separators_do_not_split() {
    assert_eq!(
        split_unquoted(r#"a="x;y";b=c"#, ';'),
        vec![r#"a="x;y""#, "b=c"]
    );
    assert_eq!(
        split_unquoted(r#"a="x\";y";b"#, ';'),
        vec![r#"a="x\";y""#, "b"]
    );
    assert_eq!(percent_decode("a%20b%0A"), Some(b"a b\n".to_vec()));
    assert_eq!(percent_decode("%2"), None);
}

/// An overlong XFCC chain is not silently dropped: it is read up to one certificate more than
/// validation accepts, so validation refuses it (consistently with a short bad chain).
#[test]
fn overlong_chain_is_kept_for_validation_to_refuse() {
    let p = pki();
    let d = digest(&p.leaf_pem);
    let chain = format!("{}{}", p.leaf_pem, p.mid_pem.repeat(20));
    let got = presented_chain(true, Some(&p.leaf_pem), Some(&d), Some(&xfcc(&d, &chain)))
        .unwrap()
        .unwrap();
    assert_eq!(got.intermediates().len(), MAX_CHAIN - 1);
    assert!(got.intermediates().len() > crate::x509_svid::MAX_INTERMEDIATES);
}
