//! X509-SVID checks over chains generated per test (rcgen) and the go-spiffe fixtures
//! (requirements §4.4 C1 … C19, X509-1 … X509-13, EDGE-3).

// `&[ca.der.clone()]` reads better in these tests than `std::slice::from_ref(&ca.der)`.
#![allow(clippy::cloned_ref_to_slice_refs)]

use super::*;
use crate::test_support::pki::*;
use rcgen::{
    date_time_ymd, BasicConstraints as RcBasicConstraints, CustomExtension,
    ExtendedKeyUsagePurpose, GeneralSubtree, IsCa, KeyPair, KeyUsagePurpose, NameConstraints,
    SanType,
};

const ID: &str = "spiffe://example.org/my-oauth-client";

fn id() -> SpiffeId {
    SpiffeId::parse(ID).unwrap()
}

fn path_error(r: Result<SpiffeId, X509SvidError>) -> String {
    match r {
        Err(X509SvidError::Path(e)) => e,
        other => panic!("expected a path validation error, got {other:?}"),
    }
}

/// §4.4 accept: leaf straight from the root, and via an intermediate.
#[test]
fn x509_1_leaf_from_root_and_via_intermediate() {
    let org = root("example.org");
    let direct = leaf(&org, &[ID], |_| {});
    assert_eq!(verify(&direct, &[], &[org.der.clone()], NOW), Ok(id()));
    let mid = intermediate(&org, "example.org", |_| {});
    let via = leaf(&mid, &[ID], |_| {});
    assert_eq!(
        verify(&via, &[mid.der.clone()], &[org.der.clone()], NOW),
        Ok(id())
    );
    // X509-13: the intermediate must come from the client; none is fetched or guessed.
    path_error(verify(&via, &[], &[org.der.clone()], NOW));
}

/// §4.4 accept variants: extra KU bits, extra DNS SAN, no EKU, P-384 keys.
#[test]
fn x509_7_x509_9_accepted_variants() {
    let org = root("example.org");
    let roots = [org.der.clone()];
    let more_ku = leaf(&org, &[ID], |p| {
        p.key_usages.extend([
            KeyUsagePurpose::KeyEncipherment,
            KeyUsagePurpose::KeyAgreement,
        ]);
    });
    assert_eq!(verify(&more_ku, &[], &roots, NOW), Ok(id()));
    let dns = leaf(&org, &[ID], |p| {
        p.subject_alt_names
            .push(SanType::DnsName("w.example.org".try_into().unwrap()))
    });
    assert_eq!(verify(&dns, &[], &roots, NOW), Ok(id()));
    let no_eku = leaf(&org, &[ID], |p| p.extended_key_usages.clear());
    assert_eq!(verify(&no_eku, &[], &roots, NOW), Ok(id()));

    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let params = ca_params("example.org");
    let der = params.self_signed(&key).unwrap().der().to_vec();
    let p384_root = Ca { params, key, der };
    let l = leaf(&p384_root, &[ID], |_| {});
    assert_eq!(verify(&l, &[], &[p384_root.der.clone()], NOW), Ok(id()));
}

/// C11 / X509-1 / EDGE-3 / BUN-22: a leaf claiming example.org but signed by example.net's root is
/// refused with example.org's authorities, even if the caller also holds example.net's root.
#[test]
fn c11_other_trust_domains_root() {
    let org = root("example.org");
    let net = root("example.net");
    let forged = leaf(&net, &[ID], |_| {});
    path_error(verify(&forged, &[], &[org.der.clone()], NOW));
    // A sub-CA of example.net carrying spiffe://example.org in its SAN changes nothing.
    let sub = intermediate(&net, "example.org", |_| {});
    let forged = leaf(&sub, &[ID], |_| {});
    path_error(verify(&forged, &[sub.der.clone()], &[org.der.clone()], NOW));
}

/// C1, C2, C3, C4, C5 / X509-2 / X509-6: URI SAN rules, read by the filter from the whole leaf
/// (EDGE-2: never Envoy's first-URI-SAN attribute). FC-23 a b c, FC-22 e.
#[test]
fn c1_c5_uri_san_rules() {
    let org = root("example.org");
    let cases: Vec<(Vec<u8>, X509SvidError)> = vec![
        (
            leaf(&org, &[ID, "spiffe://example.org/b"], |_| {}),
            X509SvidError::MultipleUriSans,
        ),
        (
            leaf(&org, &[ID, "https://example.org/whatever"], |_| {}),
            X509SvidError::MultipleUriSans,
        ),
        (
            leaf(&org, &[], |p| {
                p.subject_alt_names = vec![SanType::DnsName("a.example.org".try_into().unwrap())]
            }),
            X509SvidError::NoUriSan,
        ),
        (leaf(&org, &[], |_| {}), X509SvidError::NoUriSan),
        (
            leaf(&org, &["https://example.org/x"], |_| {}),
            X509SvidError::SanNotSpiffeId(SpiffeIdError::WrongScheme),
        ),
        (
            leaf(&org, &["spiffe://example.org"], |_| {}),
            X509SvidError::TrustDomainId,
        ),
        (
            leaf(&org, &["spiffe://Example.org/x"], |_| {}),
            X509SvidError::SanNotSpiffeId(SpiffeIdError::BadTrustDomainChar),
        ),
    ];
    for (der, want) in cases {
        assert_eq!(verify(&der, &[], &[org.der.clone()], NOW), Err(want));
    }
}

/// C6, C7, C8, C9 / X509-3, X509-4, X509-5: leaf basic constraints and key usage. FC-22 a b c d.
#[test]
fn c6_c9_leaf_profile() {
    let org = root("example.org");
    let roots = [org.der.clone()];
    let ca = leaf(&org, &[ID], |p| {
        p.is_ca = IsCa::Ca(RcBasicConstraints::Unconstrained)
    });
    assert_eq!(verify(&ca, &[], &roots, NOW), Err(X509SvidError::LeafIsCa));
    let cert_sign = leaf(&org, &[ID], |p| {
        p.key_usages.push(KeyUsagePurpose::KeyCertSign)
    });
    assert_eq!(
        verify(&cert_sign, &[], &roots, NOW),
        Err(X509SvidError::SigningKeyUsage)
    );
    let crl_sign = leaf(&org, &[ID], |p| p.key_usages.push(KeyUsagePurpose::CrlSign));
    assert_eq!(
        verify(&crl_sign, &[], &roots, NOW),
        Err(X509SvidError::SigningKeyUsage)
    );
    let no_ds = leaf(&org, &[ID], |p| {
        p.key_usages = vec![KeyUsagePurpose::KeyEncipherment]
    });
    assert_eq!(
        verify(&no_ds, &[], &roots, NOW),
        Err(X509SvidError::NoDigitalSignature)
    );
    let no_ku = leaf(&org, &[ID], |p| p.key_usages.clear());
    assert_eq!(
        verify(&no_ku, &[], &roots, NOW),
        Err(X509SvidError::NoKeyUsage)
    );
}

/// C10 / X509-11, FC-22 g/h: validity at host time, no leeway; an expired intermediate too.
#[test]
fn c10_validity() {
    let org = root("example.org");
    let roots = [org.der.clone()];
    let l = leaf(&org, &[ID], |_| {});
    // The leaf is valid 2026-03-01 … 2026-09-01.
    path_error(verify(&l, &[], &roots, 1_772_323_199)); // 2026-02-28T23:59:59Z
    path_error(verify(&l, &[], &roots, 1_788_307_201)); // 2026-09-01T00:00:01Z
    assert_eq!(verify(&l, &[], &roots, NOW), Ok(id()));
    let expired_mid = intermediate(&org, "example.org", |p| {
        p.not_before = date_time_ymd(2025, 1, 1);
        p.not_after = date_time_ymd(2026, 5, 1);
    });
    let l = leaf(&expired_mid, &[ID], |_| {});
    path_error(verify(&l, &[expired_mid.der.clone()], &roots, NOW));
}

/// C13 / C14 / X509-8: intermediates must be CAs with keyCertSign, within path length.
#[test]
fn c13_c14_intermediate_rules() {
    let org = root("example.org");
    let roots = [org.der.clone()];
    let not_ca = intermediate(&org, "example.org", |p| p.is_ca = IsCa::ExplicitNoCa);
    let l = leaf(&not_ca, &[ID], |_| {});
    assert_eq!(
        verify(&l, &[not_ca.der.clone()], &roots, NOW),
        Err(X509SvidError::IntermediateNotSigning(0))
    );
    let no_cert_sign = intermediate(&org, "example.org", |p| {
        p.key_usages = vec![KeyUsagePurpose::CrlSign]
    });
    let l = leaf(&no_cert_sign, &[ID], |_| {});
    assert_eq!(
        verify(&l, &[no_cert_sign.der.clone()], &roots, NOW),
        Err(X509SvidError::IntermediateNotSigning(0))
    );
    // An intermediate with pathLen 0 signs another intermediate: the path is too long. (A trust
    // anchor's own constraints are not path constraints in RFC 5280 §6.1, so the test puts
    // the limit on an intermediate.)
    let strict = intermediate(&org, "example.org", |p| {
        p.is_ca = IsCa::Ca(RcBasicConstraints::Constrained(0))
    });
    let below = intermediate(&strict, "example.org", |_| {});
    let l = leaf(&below, &[ID], |_| {});
    path_error(verify(
        &l,
        &[below.der.clone(), strict.der.clone()],
        &roots,
        NOW,
    ));
    // With pathLen 1 the same shape is fine.
    let loose = intermediate(&org, "example.org", |p| {
        p.is_ca = IsCa::Ca(RcBasicConstraints::Constrained(1))
    });
    let below = intermediate(&loose, "example.org", |_| {});
    let l = leaf(&below, &[ID], |_| {});
    assert_eq!(
        verify(&l, &[below.der.clone(), loose.der.clone()], &roots, NOW),
        Ok(id())
    );
}

/// C15 / FC-22 f: an unknown critical extension on the leaf is refused.
#[test]
fn c15_unknown_critical_extension() {
    let org = root("example.org");
    let l = leaf(&org, &[ID], |p| {
        let mut ext =
            CustomExtension::from_oid_content(&[1, 3, 6, 1, 4, 1, 55555, 1], vec![0x05, 0x00]);
        ext.set_criticality(true);
        p.custom_extensions.push(ext);
    });
    path_error(verify(&l, &[], &[org.der.clone()], NOW));
}

/// C16 / X509-9: an EKU without clientAuth is refused.
#[test]
fn c16_eku_without_client_auth() {
    let org = root("example.org");
    let l = leaf(&org, &[ID], |p| {
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth]
    });
    let e = path_error(verify(&l, &[], &[org.der.clone()], NOW));
    assert!(e.contains("RequiredEkuNotFound"), "{e}");
}

/// X509-10: DNS name constraints on an intermediate are enforced.
#[test]
fn x509_10_dns_name_constraints_enforced() {
    let org = root("example.org");
    let constrained = intermediate(&org, "example.org", |p| {
        p.name_constraints = Some(NameConstraints {
            permitted_subtrees: vec![GeneralSubtree::DnsName("example.org".into())],
            excluded_subtrees: vec![],
        });
    });
    let l = leaf(&constrained, &[ID], |_| {});
    assert_eq!(
        verify(&l, &[constrained.der.clone()], &[org.der.clone()], NOW),
        Ok(id())
    );
    let outside = leaf(&constrained, &[ID], |p| {
        p.subject_alt_names
            .push(SanType::DnsName("evil.example.net".try_into().unwrap()))
    });
    path_error(verify(
        &outside,
        &[constrained.der.clone()],
        &[org.der.clone()],
        NOW,
    ));
}

/// C19 / X509-10: an intermediate with a URI name constraint fails closed (rustls-webpki
/// refuses URI name constraints), even though the leaf's ID is inside it; the same bytes
/// under an unknown non-critical extension OID validate, so the constraint is the cause.
#[test]
fn c19_uri_name_constraint_fails_closed() {
    let org = root("example.org");
    // NameConstraints { permittedSubtrees [0] { GeneralSubtree { base uniformResourceIdentifier
    // [6] "spiffe://example.org" } } }, hand-encoded: rcgen cannot write URI subtrees.
    let uri = b"spiffe://example.org";
    let subtree = [&[0x30, uri.len() as u8 + 2, 0x86, uri.len() as u8][..], uri].concat();
    let permitted = [&[0xa0, subtree.len() as u8][..], &subtree].concat();
    let constraints = [&[0x30, permitted.len() as u8][..], &permitted].concat();
    let with_extension = |oid: &[u64]| {
        let mid = intermediate(&org, "example.org", |p| {
            p.custom_extensions
                .push(CustomExtension::from_oid_content(oid, constraints.clone()));
        });
        let l = leaf(&mid, &[ID], |_| {});
        verify(&l, &[mid.der.clone()], &[org.der.clone()], NOW)
    };
    path_error(with_extension(&[2, 5, 29, 30]));
    assert_eq!(with_extension(&[1, 3, 6, 1, 4, 1, 55555, 2]), Ok(id()));
}

/// C12 / X509-12 / BEP-14: no authorities for the trust domain → refused, never a system store.
#[test]
fn c12_no_authorities() {
    let org = root("example.org");
    let l = leaf(&org, &[ID], |_| {});
    assert_eq!(verify(&l, &[], &[], NOW), Err(X509SvidError::NoAuthorities));
    assert_eq!(
        verify(&l, &[], &[vec![0x30, 0x00]], NOW),
        Err(X509SvidError::NoAuthorities)
    );
}

#[test]
fn garbage_and_long_chains() {
    let org = root("example.org");
    assert_eq!(
        verify(b"not a cert", &[], &[org.der.clone()], NOW),
        Err(X509SvidError::Unparsable)
    );
    assert_eq!(
        verify(&[], &[], &[org.der.clone()], NOW),
        Err(X509SvidError::Unparsable)
    );
    let l = leaf(&org, &[ID], |_| {});
    let junk = verify(&l, &[b"junk".to_vec()], &[org.der.clone()], NOW);
    assert_eq!(junk, Err(X509SvidError::IntermediateNotSigning(0)));
    let many = vec![org.der.clone(); MAX_INTERMEDIATES + 1];
    assert_eq!(
        verify(&l, &many, &[org.der.clone()], NOW),
        Err(X509SvidError::TooManyIntermediates)
    );
}

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures/go-spiffe");

/// The first certificate of a go-spiffe PEM fixture, as DER.
fn fixture_leaf(name: &str) -> Vec<u8> {
    use x509_cert::der::Encode;
    let path = format!("{FIXTURES}/{name}");
    let pem = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let chain = Certificate::load_pem_chain(&pem).unwrap();
    chain[0].to_der().unwrap()
}

/// go-spiffe fixtures: parse and leaf profile (their roots are not shipped, so no path).
#[test]
fn go_spiffe_fixture_leaf_profiles() {
    let workload = SpiffeId::parse("spiffe://example.org/workload-1").unwrap();
    for good in [
        "svid_x509svid__good-leaf-only.pem",
        "svid_x509svid__good-leaf-and-intermediate.pem",
    ] {
        assert_eq!(
            leaf_spiffe_id(&fixture_leaf(good)),
            Ok(workload.clone()),
            "{good}"
        );
    }
    let cases = [
        (
            "svid_x509svid__wrong-leaf-ca-true.pem",
            X509SvidError::LeafIsCa,
        ),
        (
            "svid_x509svid__wrong-leaf-cert-sign.pem",
            X509SvidError::SigningKeyUsage,
        ),
        (
            "svid_x509svid__wrong-leaf-empty-id.pem",
            X509SvidError::NoUriSan,
        ),
        (
            "svid_x509svid__wrong-leaf-no-digital-signature.pem",
            X509SvidError::NoDigitalSignature,
        ),
    ];
    for (name, want) in cases {
        assert_eq!(leaf_spiffe_id(&fixture_leaf(name)), Err(want), "{name}");
    }
    let corrupt = std::fs::read(format!("{FIXTURES}/svid_x509svid__corrupt-cert.pem")).unwrap();
    assert!(Certificate::load_pem_chain(&corrupt).is_err() || leaf_spiffe_id(&corrupt).is_err());
}

/// go-spiffe fixture: an intermediate with CA=false is refused before path building.
#[test]
fn go_spiffe_wrong_intermediate_no_ca() {
    use x509_cert::der::Encode;
    let pem = std::fs::read(format!(
        "{FIXTURES}/svid_x509svid__wrong-intermediate-no-ca.pem"
    ))
    .unwrap();
    let chain: Vec<Vec<u8>> = Certificate::load_pem_chain(&pem)
        .unwrap()
        .iter()
        .map(|c| c.to_der().unwrap())
        .collect();
    assert!(chain.len() >= 2);
    let org = root("example.org");
    assert_eq!(
        verify(&chain[0], &chain[1..], &[org.der.clone()], NOW),
        Err(X509SvidError::IntermediateNotSigning(0))
    );
}

/// RSA chains (PKCS#1 v1.5 SHA-256) validate through the RustCrypto RSA verifier; a bundle
/// entry's RSA members must match its certificate (BUN-10).
#[test]
fn rsa_chain_and_bundle_entry() {
    use crate::test_support::rsa_key;
    let pem = rsa_key().to_pem().unwrap();
    let key = KeyPair::from_pem_and_sign_algo(&pem, &rcgen::PKCS_RSA_SHA256).unwrap();
    let params = ca_params("example.org");
    let der = params.self_signed(&key).unwrap().der().to_vec();
    let rsa_root = Ca { params, key, der };
    let l = leaf(&rsa_root, &[ID], |_| {});
    assert_eq!(verify(&l, &[], &[rsa_root.der.clone()], NOW), Ok(id()));
    // The leaf carries the RSA root's signature last: flip a bit of it and the RSA check fails.
    let mut tampered = l.clone();
    *tampered.last_mut().unwrap() ^= 1;
    path_error(verify(&tampered, &[], &[rsa_root.der.clone()], NOW));

    let c = rsa_key().public_key().to_components();
    let entry = |e: &[u8]| {
        format!(
            r#"{{"keys":[{{"use":"x509-svid","kty":"RSA","n":"{}","e":"{}","x5c":["{}"]}}]}}"#,
            crate::b64::encode_url(&c.n),
            crate::b64::encode_url(e),
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &rsa_root.der)
        )
    };
    let good = crate::bundle::TrustBundle::parse(entry(&c.e).as_bytes()).unwrap();
    assert_eq!(good.x509_authorities, vec![rsa_root.der.clone()]);
    let wrong_e = crate::bundle::TrustBundle::parse(entry(&[3]).as_bytes()).unwrap();
    assert!(wrong_e.x509_authorities.is_empty());
}

/// X509-8 (strict): an intermediate whose SPIFFE ID has a path, or names another trust domain
/// (even cross-signed by this trust domain's root), does not sign this trust domain's SVIDs.
#[test]
fn x509_8_intermediate_spiffe_ids() {
    let org = root("example.org");
    let with_path = intermediate(&org, "example.org", |p| {
        p.subject_alt_names = vec![uri("spiffe://example.org/demo-client")]
    });
    let l = leaf(&with_path, &[ID], |_| {});
    assert_eq!(
        verify(&l, &[with_path.der.clone()], &[org.der.clone()], NOW),
        Err(X509SvidError::IntermediateNotSigning(0))
    );
    let net_named = intermediate(&org, "example.net", |_| {});
    let l = leaf(&net_named, &[ID], |_| {});
    assert_eq!(
        verify(&l, &[net_named.der.clone()], &[org.der.clone()], NOW),
        Err(X509SvidError::IntermediateNotSigning(0))
    );
}

/// BUN-12: the trust domain's authorities are the union of its x509-svid entries: during a
/// rotation, leaves under either root validate; a third root's leaf does not.
#[test]
fn bun_12_union_of_authorities() {
    let old = root("example.org");
    let new = root("example.org");
    let roots = [old.der.clone(), new.der.clone()];
    for ca in [&old, &new] {
        assert_eq!(verify(&leaf(ca, &[ID], |_| {}), &[], &roots, NOW), Ok(id()));
    }
    let stranger = root("example.org");
    let err = path_error(verify(&leaf(&stranger, &[ID], |_| {}), &[], &roots, NOW));
    assert_eq!(err, "InvalidSignatureForPublicKey");
}

/// BUN-21: a bundle authority need not carry the trust domain's SPIFFE ID (the D-02 example's
/// root says `spiffe://local`) nor be self-signed; leaves under it validate.
#[test]
fn bun_21_authority_without_the_trust_domains_id() {
    let local = root("local");
    assert_eq!(
        verify(&leaf(&local, &[ID], |_| {}), &[], &[local.der.clone()], NOW),
        Ok(id())
    );
    let issued = intermediate(&root("elsewhere"), "example.org", |_| {});
    assert_eq!(
        verify(
            &leaf(&issued, &[ID], |_| {}),
            &[],
            &[issued.der.clone()],
            NOW
        ),
        Ok(id())
    );
}

/// REQ-10, FC-12 c, FC-23: what cannot be read cannot be ruled out: an unreadable leaf, or a
/// subjectAltName extension the parser cannot decode, counts as a SPIFFE claim; a readable
/// certificate without a `spiffe:` URI does not.
#[test]
fn unreadable_certificates_count_as_spiffe_claims() {
    let org = root("example.org");
    assert!(claims_spiffe_id(b"not a certificate"));
    assert!(claims_spiffe_id(&[]));
    let bad_san = leaf(&org, &[], |p| {
        p.custom_extensions.push(CustomExtension::from_oid_content(
            &[2, 5, 29, 17],
            vec![0x30, 0x02, 0xa3, 0x00],
        ))
    });
    assert!(claims_spiffe_id(&bad_san));
    let dns_only = leaf(&org, &[], |p| {
        p.subject_alt_names = vec![rcgen::SanType::DnsName("w.example.org".try_into().unwrap())]
    });
    assert!(!claims_spiffe_id(&dns_only));
    assert!(claims_spiffe_id(&leaf(&org, &[ID], |_| {})));
}
