//! X509-SVID chain validation, differential: our path validation (rustls-webpki over RustCrypto)
//! against `openssl verify` (`-purpose sslclient -x509_strict`, anchors = the trust domain's
//! authorities only) on chains whose leaves meet the SPIFFE profile, so that the two judge the
//! same thing: signatures, validity windows, CA constraints, path length, key usage, EKU and
//! which anchors are trusted (X509-1, X509-7, X509-9, X509-11; FC-22).
//!
//! Known difference, pinned: a CA certificate whose subject equals its issuer's ("self-issued")
//! does not count towards a path length constraint in RFC 5280 (OpenSSL accepts such a chain);
//! webpki counts it and refuses, failing closed.

use super::*;
use crate::test_support::pki::*;
use rcgen::{
    date_time_ymd, BasicConstraints as RcBasicConstraints, ExtendedKeyUsagePurpose, IsCa,
    KeyUsagePurpose,
};
use std::path::Path;
use std::process::Command;

const ID: &str = "spiffe://example.org/workload";

fn pem(ders: &[&[u8]]) -> String {
    ders.iter()
        .map(|der| {
            let body = crate::b64::encode_std(der);
            let lines: Vec<&str> = body
                .as_bytes()
                .chunks(64)
                .map(|c| std::str::from_utf8(c).unwrap())
                .collect();
            format!(
                "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
                lines.join("\n")
            )
        })
        .collect()
}

/// Gives a CA a subject name of its own (rcgen's default name is the same for all).
fn named(params: &mut rcgen::CertificateParams, cn: &str) {
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
}

/// `openssl verify` at [`NOW`]: does the chain validate to one of `roots`?
fn openssl_accepts(dir: &Path, leaf: &[u8], intermediates: &[&[u8]], roots: &[&[u8]]) -> bool {
    std::fs::write(dir.join("leaf.pem"), pem(&[leaf])).unwrap();
    std::fs::write(dir.join("roots.pem"), pem(roots)).unwrap();
    let mut cmd = Command::new("openssl");
    cmd.arg("verify")
        .args([
            "-x509_strict",
            "-purpose",
            "sslclient",
            "-attime",
            &NOW.to_string(),
        ])
        .arg("-CAfile")
        .arg(dir.join("roots.pem"));
    if !intermediates.is_empty() {
        std::fs::write(dir.join("untrusted.pem"), pem(intermediates)).unwrap();
        cmd.arg("-untrusted").arg(dir.join("untrusted.pem"));
    }
    let out = cmd
        .arg(dir.join("leaf.pem"))
        .output()
        .expect("openssl must be installed (Debian: openssl)");
    out.status.success()
}

/// X509-1, X509-11 (anchors' validity too), X509-9, FC-22: 14 chain shapes, both verdicts
/// asserted.
#[test]
fn x509_1_chain_validation_agrees_with_openssl() {
    let dir = std::env::temp_dir().join(format!("spiffe-x509-diff-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let root = root("example.org");
    let other_root = self::root("example.org");
    let inter = intermediate(&root, "example.org", |_| {});
    let pathlen0 = intermediate(&root, "example.org", |p| {
        named(p, "pathlen 0");
        p.is_ca = IsCa::Ca(RcBasicConstraints::Constrained(0))
    });
    let below_pathlen0 = intermediate(&pathlen0, "example.org", |p| named(p, "below pathlen 0"));
    // Same names as its issuer: "self-issued", which RFC 5280 §6.1.4 (l) does not count
    // towards the path length (OpenSSL follows it); webpki counts every CA. Pinned below.
    let self_issued_below = intermediate(&pathlen0, "example.org", |p| named(p, "pathlen 0"));
    let expired_inter = intermediate(&root, "example.org", |p| {
        p.not_after = date_time_ymd(2026, 2, 1)
    });
    let no_cert_sign = intermediate(&root, "example.org", |p| {
        p.key_usages = vec![KeyUsagePurpose::CrlSign]
    });
    let expired_root = {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = ca_params("example.org");
        params.not_after = date_time_ymd(2026, 2, 1);
        let der = params.self_signed(&key).unwrap().der().to_vec();
        Ca { params, key, der }
    };
    let leaf_of = |ca: &Ca| leaf(ca, &[ID], |_| {});
    let server_only = leaf(&inter, &[ID], |p| {
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth]
    });
    let expired_leaf = leaf(&inter, &[ID], |p| p.not_after = date_time_ymd(2026, 4, 1));
    let future_leaf = leaf(&inter, &[ID], |p| p.not_before = date_time_ymd(2026, 8, 1));
    // (name, leaf, presented intermediates, trusted roots, expected verdict)
    type Chain<'a> = (&'a str, Vec<u8>, Vec<&'a [u8]>, Vec<&'a [u8]>, bool);
    let cases: Vec<Chain<'_>> = vec![
        (
            "directly under the root",
            leaf_of(&root),
            vec![],
            vec![&root.der],
            true,
        ),
        (
            "through an intermediate",
            leaf_of(&inter),
            vec![&inter.der],
            vec![&root.der],
            true,
        ),
        (
            "intermediate not presented",
            leaf_of(&inter),
            vec![],
            vec![&root.der],
            false,
        ),
        (
            "another root trusted",
            leaf_of(&inter),
            vec![&inter.der],
            vec![&other_root.der],
            false,
        ),
        (
            "second of two roots",
            leaf_of(&inter),
            vec![&inter.der],
            vec![&other_root.der, &root.der],
            true,
        ),
        (
            "expired leaf",
            expired_leaf,
            vec![&inter.der],
            vec![&root.der],
            false,
        ),
        (
            "leaf not yet valid",
            future_leaf,
            vec![&inter.der],
            vec![&root.der],
            false,
        ),
        (
            "expired intermediate",
            leaf_of(&expired_inter),
            vec![&expired_inter.der],
            vec![&root.der],
            false,
        ),
        (
            "path length exceeded",
            leaf_of(&below_pathlen0),
            vec![&below_pathlen0.der, &pathlen0.der],
            vec![&root.der],
            false,
        ),
        (
            "intermediate without keyCertSign",
            leaf_of(&no_cert_sign),
            vec![&no_cert_sign.der],
            vec![&root.der],
            false,
        ),
        (
            "serverAuth-only EKU",
            server_only,
            vec![&inter.der],
            vec![&root.der],
            false,
        ),
        (
            "expired root",
            leaf_of(&expired_root),
            vec![],
            vec![&expired_root.der],
            false,
        ),
        (
            "path length, self-issued CA below",
            leaf_of(&self_issued_below),
            vec![&self_issued_below.der, &pathlen0.der],
            vec![&root.der],
            false,
        ),
        (
            "unused extra intermediate",
            leaf_of(&inter),
            vec![&inter.der, &pathlen0.der],
            vec![&root.der],
            true,
        ),
    ];
    for (name, leaf, intermediates, roots, expected) in cases {
        let owned: Vec<Vec<u8>> = intermediates.iter().map(|d| d.to_vec()).collect();
        let anchors: Vec<Vec<u8>> = roots.iter().map(|d| d.to_vec()).collect();
        let ours = verify(&leaf, &owned, &anchors, NOW).is_ok();
        let theirs = openssl_accepts(&dir, &leaf, &intermediates, &roots);
        // The one known difference: webpki is stricter than RFC 5280 on self-issued CAs.
        let openssl_expected = expected || name == "path length, self-issued CA below";
        assert_eq!(
            (ours, theirs),
            (expected, openssl_expected),
            "{name}: ours, openssl"
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}
