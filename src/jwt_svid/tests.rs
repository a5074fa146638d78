//! Requirements §4.2 vectors (JWT-*, AUD-*, TIME-*, CID-7) against the JWT-SVID validator.

use super::*;
use crate::test_support::*;
use jwt_simple::prelude::RS256KeyPair;

const MAX: usize = 16 * 1024;

fn policy() -> JwtSvidPolicy<'static> {
    JwtSvidPolicy {
        audience: ISSUER,
        leeway_secs: 60,
    }
}

fn k1() -> EcKey {
    EcKey::p256(1)
}

fn td_bundle() -> TrustBundle {
    bundle(&[k1().jwk("k1")])
}

fn check(token: &str, bundle: &TrustBundle) -> Result<SpiffeId, JwtSvidError> {
    JwtSvid::decode(token, MAX)?.verify(bundle, &policy(), NOW)
}

fn claims_with(replace: &str, with: &str) -> String {
    assert!(BASE_CLAIMS.contains(replace), "{replace}");
    BASE_CLAIMS.replacen(replace, with, 1)
}

fn header_with(replace: &str, with: &str) -> String {
    assert!(BASE_HEADER.contains(replace), "{replace}");
    BASE_HEADER.replacen(replace, with, 1)
}

/// §4.2 baseline: the draft-shaped JWT-SVID is accepted.
#[test]
fn baseline_accepts() {
    let token = k1().sign(BASE_HEADER, BASE_CLAIMS);
    assert_eq!(check(&token, &td_bundle()).unwrap().as_str(), CLIENT);
}

/// §4.2 accept variants: typ omitted or JOSE (JWT-9), one-element aud (AUD-5), no iat, iss
/// and jti present (JWT-16, JWT-17), an extra claim (JWT-18), exp inside the leeway (TIME-2),
/// a fractional NumericDate (OPEN-5).
#[test]
fn accepted_variants() {
    let b = td_bundle();
    let ok = |h: &str, c: &str| {
        let token = k1().sign(h, c);
        assert_eq!(
            check(&token, &b),
            Ok(SpiffeId::parse(CLIENT).unwrap()),
            "{h} {c}"
        );
    };
    // JWT-9: typ omitted or JOSE.
    ok(r#"{"alg":"ES256","kid":"k1"}"#, BASE_CLAIMS);
    ok(
        &header_with(r#""typ":"JWT""#, r#""typ":"JOSE""#),
        BASE_CLAIMS,
    );
    // AUD-5: one-element array.
    ok(
        BASE_HEADER,
        &claims_with(
            r#""aud":"https://as.example.com""#,
            r#""aud":["https://as.example.com"]"#,
        ),
    );
    // No iat; iss and jti present (JWT-16, JWT-17); extra claim (JWT-18).
    ok(BASE_HEADER, &claims_with(r#","iat":1747124243"#, ""));
    ok(
        BASE_HEADER,
        &claims_with(
            r#""iat""#,
            r#""iss":"https://oidc.example.org","jti":"j-1","x":1,"iat""#,
        ),
    );
    // TIME-2: expired 30 s ago is inside the 60 s leeway.
    ok(BASE_HEADER, &claims_with("1747124600", "1747124270"));
    // OPEN-5: a fractional NumericDate is floored.
    ok(BASE_HEADER, &claims_with("1747124600", "1747124600.75"));
}

/// JWT-17: the same token twice is accepted twice (no replay cache).
#[test]
fn jwt_17_replayed_token_accepted_twice() {
    let token = k1().sign(BASE_HEADER, BASE_CLAIMS);
    let b = td_bundle();
    assert!(check(&token, &b).is_ok());
    assert!(check(&token, &b).is_ok());
}

/// §4.2 accept variants: P-384 with ES384 and P-521 with ES512 (JWT-4, JWT-5); a flipped
/// claims byte breaks the signature (JWT-12).
#[test]
fn p384_es384_and_p521_es512_accept() {
    let k384 = EcKey::p384(3);
    let b = bundle(&[k384.jwk("k384")]);
    let t = k384.sign(r#"{"alg":"ES384","kid":"k384"}"#, BASE_CLAIMS);
    assert!(check(&t, &b).is_ok());

    let k521 = EcKey::p521(5);
    let b = bundle(&[k521.jwk("k521")]);
    let t = k521.sign(r#"{"alg":"ES512","kid":"k521"}"#, BASE_CLAIMS);
    assert!(check(&t, &b).is_ok());
    // A flipped claims byte breaks the ES512 signature.
    let forged = t.replacen("eyJzdWIi", "eyJzdWIj", 1);
    assert_ne!(forged, t);
    assert!(check(&forged, &b).is_err());
}

/// §4.2 accept variants: an RSA 2048 key with RS256 and PS256 (JWT-4, JWT-5).
#[test]
fn rsa_rs256_and_ps256_accept() {
    let b = bundle(&[rsa_jwk("r1")]);
    for alg in ["RS256", "PS256"] {
        let t = rsa_token(alg, "r1");
        assert_eq!(
            check(&t, &b).map(|id| id.to_string()),
            Ok(CLIENT.to_owned()),
            "{alg}"
        );
    }
}

/// J1, J3: forbidden algorithms are refused before any key is looked at (JWT-4, FC-04).
#[test]
fn j1_j3_alg_allow_list() {
    let b = td_bundle();
    let none = format!(
        "eyJhbGciOiJub25lIn0.{}.",
        b64::encode_url(BASE_CLAIMS.as_bytes())
    );
    assert_eq!(
        JwtSvid::decode(&none, MAX).unwrap_err(),
        JwtSvidError::AlgNotAllowed("none".into())
    );
    for alg in [
        "EdDSA", "ES256K", "RS1", "es256", "HS256", "HS512", "None", "NONE", "",
    ] {
        let t = k1().sign(&format!(r#"{{"alg":"{alg}","kid":"k1"}}"#), BASE_CLAIMS);
        assert_eq!(
            check(&t, &b),
            Err(JwtSvidError::AlgNotAllowed(alg.into())),
            "{alg}"
        );
    }
    let t = k1().sign(r#"{"kid":"k1"}"#, BASE_CLAIMS);
    assert_eq!(check(&t, &b), Err(JwtSvidError::AlgMissing));
    let t = k1().sign(r#"{"alg":["ES256"],"kid":"k1"}"#, BASE_CLAIMS);
    assert!(matches!(check(&t, &b), Err(JwtSvidError::AlgNotAllowed(_))));
}

/// J2: HS256 "signed" with the public key bytes is refused (JWT-5, FC-04).
#[test]
fn j2_hmac_with_public_key_refused() {
    let input = format!(
        "{}.{}",
        b64::encode_url(br#"{"alg":"HS256","kid":"k1"}"#),
        b64::encode_url(BASE_CLAIMS.as_bytes())
    );
    // The MAC value does not matter: the alg is refused before any key or MAC is used.
    let token = format!("{input}.{}", b64::encode_url(&[7u8; 32]));
    assert_eq!(
        check(&token, &td_bundle()),
        Err(JwtSvidError::AlgNotAllowed("HS256".into()))
    );
}

/// J4: ES384 with the P-256 key k1 (JWT-5).
#[test]
fn j4_alg_curve_mismatch() {
    let k384 = EcKey::p384(3);
    let t = k384.sign(r#"{"alg":"ES384","kid":"k1"}"#, BASE_CLAIMS);
    assert_eq!(check(&t, &td_bundle()), Err(JwtSvidError::NoKeyFitsAlg));
}

/// J5: a 1024-bit RSA key never enters the bundle (JWT-6, BUN-6, FC-33).
#[test]
fn j5_weak_rsa_key_skipped() {
    let weak = RS256KeyPair::generate(1024);
    // jwt-simple refuses to even generate it; build the JWK from a 1024-bit modulus instead.
    assert!(weak.is_err());
    let n = b64::encode_url(&[0xc3; 128]);
    let jwk = format!(r#"{{"use":"jwt-svid","kty":"RSA","kid":"r-weak","n":"{n}","e":"AQAB"}}"#);
    let b = bundle(&[jwk]);
    assert!(b.jwt_keys.is_empty());
    assert_eq!(b.skipped.len(), 1);
    let t = rsa_token("RS256", "r-weak");
    assert_eq!(
        check(&t, &b),
        Err(JwtSvidError::UnknownKid("r-weak".into()))
    );
}

/// J6: a DER-encoded ECDSA signature is the wrong length (JWT-7, FC-28).
#[test]
fn j6_der_signature_refused() {
    let t = k1().sign(BASE_HEADER, BASE_CLAIMS);
    let (input, _) = t.rsplit_once('.').unwrap();
    let raw = k1().raw_signature(input.as_bytes());
    let sig = p256::ecdsa::Signature::from_slice(&raw).unwrap();
    let der = sig.to_der();
    let token = format!("{input}.{}", b64::encode_url(der.as_bytes()));
    assert_eq!(
        check(&token, &td_bundle()),
        Err(JwtSvidError::SignatureLength)
    );
    // Two extra bytes after a good signature.
    let mut long = raw.clone();
    long.extend_from_slice(&[0, 0]);
    let token = format!("{input}.{}", b64::encode_url(&long));
    assert_eq!(
        check(&token, &td_bundle()),
        Err(JwtSvidError::SignatureLength)
    );
}

/// FC-03: r = s = 0 never verifies.
#[test]
fn psychic_signature_refused() {
    let t = k1().sign(BASE_HEADER, BASE_CLAIMS);
    let (input, _) = t.rsplit_once('.').unwrap();
    let token = format!("{input}.{}", "A".repeat(86));
    assert_eq!(check(&token, &td_bundle()), Err(JwtSvidError::BadSignature));
}

/// J7: typ other than JWT/JOSE (JWT-9).
#[test]
fn j7_typ_refused() {
    for typ in [
        "client-authentication+jwt",
        "at+jwt",
        "wit+jwt",
        "dpop+jwt",
        "jwt",
    ] {
        let t = k1().sign(
            &header_with(r#""typ":"JWT""#, &format!(r#""typ":"{typ}""#)),
            BASE_CLAIMS,
        );
        assert!(
            matches!(check(&t, &td_bundle()), Err(JwtSvidError::TypNotAllowed(_))),
            "{typ}"
        );
    }
}

/// J8, J9, J10, FC-30: jku, crit, jwk, x5c and any other header member are refused (JWT-10:
/// no key or URL is ever taken from the header).
#[test]
fn j8_j9_j10_forbidden_header_members() {
    let attacker = EcKey::p256(9);
    let b = td_bundle();
    let cases = [
        (
            r#"{"alg":"ES256","kid":"k1","jku":"https://attacker.example/jwks.json"}"#,
            "jku",
        ),
        (r#"{"alg":"ES256","kid":"k1","crit":["exp"]}"#, "crit"),
        (
            r#"{"alg":"ES256","kid":"k1","crit":["b64"],"b64":false}"#,
            "b64",
        ),
        (r#"{"alg":"ES256","jwk":{"kty":"EC"}}"#, "jwk"),
        (r#"{"alg":"ES256","x5c":["MIIB"]}"#, "x5c"),
        (
            r#"{"alg":"ES256","kid":"k1","x5u":"https://a.example"}"#,
            "x5u",
        ),
        (r#"{"alg":"ES256","kid":"k1","cty":"JWT"}"#, "cty"),
    ];
    for (header, member) in cases {
        let t = attacker.sign(header, BASE_CLAIMS);
        let got = check(&t, &b).unwrap_err();
        // b64 sorts before crit: either name is reported, both are refused.
        assert!(
            matches!(&got, JwtSvidError::HeaderMemberNotAllowed(m) if m == member || (member == "b64" && m == "crit")),
            "{header}: {got:?}"
        );
    }
}

/// J11, J12: missing kid (default policy), kid in another case, unknown kid (JWT-11).
#[test]
fn j11_j12_kid_rules() {
    let b = td_bundle();
    let t = k1().sign(r#"{"alg":"ES256","typ":"JWT"}"#, BASE_CLAIMS);
    assert_eq!(check(&t, &b), Err(JwtSvidError::KidMissing));
    let t = k1().sign(&header_with(r#""kid":"k1""#, r#""kid":"K1""#), BASE_CLAIMS);
    assert_eq!(check(&t, &b), Err(JwtSvidError::UnknownKid("K1".into())));
    let t = k1().sign(
        &header_with(r#""kid":"k1""#, r#""kid":{"a":1}"#),
        BASE_CLAIMS,
    );
    assert_eq!(check(&t, &b), Err(JwtSvidError::KidNotString));
}

/// J13: signed by another trust domain's key whose kid also exists here (JWT-12, BUN-22: the
/// trust domains' keys are never pooled).
#[test]
fn j13_key_of_another_trust_domain() {
    let net_key = EcKey::p256(7);
    let t = net_key.sign(BASE_HEADER, BASE_CLAIMS);
    // example.org's bundle has k1 = a different key; example.net's k1 is never consulted.
    assert_eq!(check(&t, &td_bundle()), Err(JwtSvidError::BadSignature));
}

/// J14: a kid that matches only an x509-svid or a use:sig entry (JWT-13).
#[test]
fn j14_kid_only_on_non_jwt_entries() {
    let sig_entry = k1()
        .jwk("k1")
        .replace(r#""use":"jwt-svid""#, r#""use":"sig""#);
    let b = bundle(&[sig_entry]);
    let t = k1().sign(BASE_HEADER, BASE_CLAIMS);
    assert_eq!(check(&t, &b), Err(JwtSvidError::UnknownKid("k1".into())));
}

/// J15, J16: sub rules (JWT-14, CID-7).
#[test]
fn j15_j16_sub_rules() {
    let b = td_bundle();
    let sub = |v: &str| {
        k1().sign(
            BASE_HEADER,
            &claims_with(r#""sub":"spiffe://example.org/my-oauth-client""#, v),
        )
    };
    assert_eq!(check(&sub(r#""x":1"#), &b), Err(JwtSvidError::SubMissing));
    assert_eq!(
        check(&sub(r#""sub":42"#), &b),
        Err(JwtSvidError::SubMissing)
    );
    assert!(matches!(
        check(&sub(r#""sub":"my-oauth-client""#), &b),
        Err(JwtSvidError::SubInvalid(_))
    ));
    assert!(matches!(
        check(&sub(r#""sub":"spiffe://example.org/a/../b""#), &b),
        Err(JwtSvidError::SubInvalid(_))
    ));
    assert!(matches!(
        check(&sub(r#""sub":"spiffe://Example.org/x""#), &b),
        Err(JwtSvidError::SubInvalid(_))
    ));
    assert_eq!(
        check(&sub(r#""sub":"spiffe://example.org""#), &b),
        Err(JwtSvidError::SubIsTrustDomainId)
    );
}

/// J18, J19, J20, J21, FC-01, FC-02: audience rules: missing or empty (AUD-1), a second value
/// (AUD-2), the token endpoint URL (AUD-3), no normalisation (AUD-4), wrong JSON types (AUD-6).
#[test]
fn j18_j21_audience_rules() {
    let b = td_bundle();
    let aud = |v: &str| {
        k1().sign(
            BASE_HEADER,
            &claims_with(r#""aud":"https://as.example.com""#, v),
        )
    };
    let cases: &[(&str, JwtSvidError)] = &[
        (r#""x":0"#, JwtSvidError::AudMissing),
        (r#""aud":[]"#, JwtSvidError::AudMissing),
        (r#""aud":"""#, JwtSvidError::AudMissing),
        (r#""aud":null"#, JwtSvidError::AudMalformed),
        (r#""aud":42"#, JwtSvidError::AudMalformed),
        (r#""aud":[null]"#, JwtSvidError::AudMalformed),
        (r#""aud":{"a":1}"#, JwtSvidError::AudMalformed),
        (
            r#""aud":["https://as.example.com","https://rs.example.com"]"#,
            JwtSvidError::AudMismatch,
        ),
        (
            r#""aud":["https://as.example.com","https://as.example.com"]"#,
            JwtSvidError::AudMismatch,
        ),
        (
            r#""aud":"https://as.example.com/token""#,
            JwtSvidError::AudMismatch,
        ),
        (
            r#""aud":["https://as.example.com/token"]"#,
            JwtSvidError::AudMismatch,
        ),
        (
            r#""aud":"https://as.example.com/""#,
            JwtSvidError::AudMismatch,
        ),
        (
            r#""aud":"HTTPS://as.example.com""#,
            JwtSvidError::AudMismatch,
        ),
        (
            r#""aud":"https://AS.example.com""#,
            JwtSvidError::AudMismatch,
        ),
        (
            r#""aud":"https://as.example.com:443""#,
            JwtSvidError::AudMismatch,
        ),
    ];
    for (aud_member, want) in cases {
        assert_eq!(
            check(&aud(aud_member), &b),
            Err(want.clone()),
            "{aud_member}"
        );
    }
}

/// J22, J23, J24, J25, J26: time claims: exp required (TIME-1), expired at exp + leeway
/// (TIME-2), numbers only (TIME-3), nbf (TIME-4), iat in the future (TIME-5).
#[test]
fn j22_j26_time_rules() {
    let b = td_bundle();
    let exp = |v: &str| k1().sign(BASE_HEADER, &claims_with(r#""exp":1747124600"#, v));
    assert_eq!(check(&exp(r#""x":1"#), &b), Err(JwtSvidError::ExpMissing));
    assert_eq!(
        check(&exp(r#""exp":1747124180"#), &b),
        Err(JwtSvidError::Expired)
    );
    // Boundary: now == exp + leeway is expired.
    assert_eq!(
        check(&exp(r#""exp":1747124240"#), &b),
        Err(JwtSvidError::Expired)
    );
    assert!(check(&exp(r#""exp":1747124241"#), &b).is_ok());
    assert_eq!(
        check(&exp(r#""exp":"1747124600""#), &b),
        Err(JwtSvidError::TimeClaimNotNumber("exp"))
    );
    assert_eq!(
        check(&exp(r#""exp":-1"#), &b),
        Err(JwtSvidError::TimeClaimNotNumber("exp"))
    );
    assert_eq!(
        check(&exp(r#""exp":null"#), &b),
        Err(JwtSvidError::TimeClaimNotNumber("exp"))
    );
    let nbf = k1().sign(
        BASE_HEADER,
        &claims_with(r#""iat""#, r#""nbf":1747124900,"iat""#),
    );
    assert_eq!(check(&nbf, &b), Err(JwtSvidError::NotYetValid));
    let nbf_ok = k1().sign(
        BASE_HEADER,
        &claims_with(r#""iat""#, r#""nbf":1747124350,"iat""#),
    );
    assert!(check(&nbf_ok, &b).is_ok());
    let iat = k1().sign(BASE_HEADER, &claims_with("1747124243", "1747124900"));
    assert_eq!(check(&iat, &b), Err(JwtSvidError::IssuedInFuture));
}

/// J27: duplicate claims members (JWT-3).
#[test]
fn j27_duplicate_members() {
    let b = td_bundle();
    let c = claims_with(r#""aud""#, r#""sub":"spiffe://example.org/b","aud""#);
    let t = k1().sign(BASE_HEADER, &c);
    assert_eq!(
        check(&t, &b),
        Err(JwtSvidError::ClaimsJson(JsonError::DuplicateMember(
            "sub".into()
        )))
    );
    let t = k1().sign(r#"{"alg":"ES256","kid":"k1","kid":"k2"}"#, BASE_CLAIMS);
    assert_eq!(
        check(&t, &b),
        Err(JwtSvidError::HeaderJson(JsonError::DuplicateMember(
            "kid".into()
        )))
    );
}

/// J28, FC-28, FC-29: compact serialization only (JWT-1) and strict unpadded base64url (JWT-2).
#[test]
fn j28_structure_and_encoding() {
    let b = td_bundle();
    let t = k1().sign(BASE_HEADER, BASE_CLAIMS);
    let (h, rest) = t.split_once('.').unwrap();
    let (c, s) = rest.split_once('.').unwrap();
    let mut cases: Vec<(String, JwtSvidError)> = vec![
        (format!("{t}.x.y"), JwtSvidError::NotCompactJws),
        (format!("{h}.{c}"), JwtSvidError::NotCompactJws),
        (".".repeat(100_000), JwtSvidError::TooLong),
        (
            format!(r#"{{"payload":"{c}","signatures":[]}}"#),
            JwtSvidError::NotCompactJws,
        ),
        (format!("{h}=.{c}.{s}"), JwtSvidError::BadBase64),
        (format!("{t}=="), JwtSvidError::BadBase64),
        (format!("{t}!!!!"), JwtSvidError::BadBase64),
        (format!("{h}.{c}\n.{s}"), JwtSvidError::BadBase64),
        ("a.b.c".to_owned(), JwtSvidError::BadBase64),
    ];
    if s.contains(['-', '_']) {
        let std_alphabet = s.replace('-', "+").replace('_', "/");
        cases.push((format!("{h}.{c}.{std_alphabet}"), JwtSvidError::BadBase64));
    }
    for (token, want) in cases {
        let got = JwtSvid::decode(&token, MAX).map(|_| ()).unwrap_err();
        assert_eq!(got, want, "{:.60}", token);
    }
    // Non-canonical trailing bits on the signature's last character.
    let last = s.chars().last().unwrap();
    let flipped = match last {
        'A' => 'B',
        'Q' => 'R',
        'g' => 'h',
        'w' => 'x',
        other => panic!("ES256 signature ends in {other}"),
    };
    let tampered = format!("{h}.{c}.{}{flipped}", &s[..s.len() - 1]);
    assert_eq!(
        JwtSvid::decode(&tampered, MAX).unwrap_err(),
        JwtSvidError::BadBase64
    );
    // 64 KiB assertion (J30, REQ-12).
    let big = format!("{h}.{}.{s}", "A".repeat(64 * 1024));
    assert_eq!(
        JwtSvid::decode(&big, MAX).unwrap_err(),
        JwtSvidError::TooLong
    );
    assert!(check(&t, &b).is_ok());
}

/// JWT-8: a JWK alg member must match the header alg; absent is fine.
#[test]
fn jwt_8_jwk_alg_member() {
    let t = k1().sign(BASE_HEADER, BASE_CLAIMS);
    let with_alg = |a: &str| {
        k1().jwk("k1")
            .replacen('{', &format!(r#"{{"alg":"{a}","#), 1)
    };
    assert!(check(&t, &bundle(&[with_alg("ES256")])).is_ok());
    assert_eq!(
        check(&t, &bundle(&[with_alg("ES384")])),
        Err(JwtSvidError::NoKeyFitsAlg)
    );
}

/// BUN-15: duplicate kids, the second one verifies.
#[test]
fn bun_15_duplicate_kid_either_verifies() {
    let other = EcKey::p256(2);
    let b = bundle(&[other.jwk("k1"), k1().jwk("k1")]);
    let t = k1().sign(BASE_HEADER, BASE_CLAIMS);
    assert!(check(&t, &b).is_ok());
}

/// BUN-2: an empty bundle (revoked) verifies nothing.
#[test]
fn bun_2_revoked_bundle() {
    let t = k1().sign(BASE_HEADER, BASE_CLAIMS);
    assert_eq!(
        check(&t, &bundle(&[])),
        Err(JwtSvidError::UnknownKid("k1".into()))
    );
}

/// FC-29: a deeply nested header is an error, not a crash.
#[test]
fn deep_nesting_in_header() {
    let header = format!(
        r#"{{"alg":"ES256","x":{}{}}}"#,
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let t = k1().sign(&header, BASE_CLAIMS);
    assert!(matches!(
        JwtSvid::decode(&t, 1 << 20),
        Err(JwtSvidError::HeaderJson(_))
    ));
}

/// A validly signed token whose `iss` or `jti` is not a string (RFC 7519 §4.1.1, §4.1.7) is
/// refused before any key is looked at, and the log says why.
#[test]
fn registered_claim_of_the_wrong_type() {
    for (claim, value) in [("iss", "42"), ("jti", "{}"), ("iss", "null")] {
        let extra = format!(r#""{claim}":{value},"iat""#);
        let t = k1().sign(BASE_HEADER, &claims_with(r#""iat""#, &extra));
        assert_eq!(
            JwtSvid::decode(&t, 1 << 20).err(),
            Some(JwtSvidError::ClaimNotString(claim))
        );
    }
}

/// JWT-19 / ISS-3: a JWT whose `sub` merely looks like a SPIFFE ID is no JWT-SVID: signed by
/// an OIDC provider's key that is not a `jwt-svid` key of the trust domain (absent, or only
/// published with `use: sig`), or typed as an OIDC access token, it is refused.
#[test]
fn jwt_19_iss_3_token_type_confusion() {
    let oidc = EcKey::p256(9);
    let claims = claims_with(r#""iat""#, r#""iss":"https://oidc.example.org","iat""#);
    let header = r#"{"alg":"ES256","kid":"oidc-1","typ":"JWT"}"#;
    let id_token = oidc.sign(header, &claims);
    assert_eq!(
        check(&id_token, &td_bundle()),
        Err(JwtSvidError::UnknownKid("oidc-1".into()))
    );
    let sig_entry = oidc
        .jwk("oidc-1")
        .replace(r#""use":"jwt-svid""#, r#""use":"sig""#);
    let with_sig_key = bundle(&[k1().jwk("k1"), sig_entry]);
    assert_eq!(
        check(&id_token, &with_sig_key),
        Err(JwtSvidError::UnknownKid("oidc-1".into()))
    );
    // An access token typed at+jwt is refused even under the trust domain's own key.
    let access_token = k1().sign(&header_with(r#""typ":"JWT""#, r#""typ":"at+jwt""#), &claims);
    assert_eq!(
        check(&access_token, &td_bundle()),
        Err(JwtSvidError::TypNotAllowed(r#""at+jwt""#.into()))
    );
}

/// TIME-6 (decision): no maximum lifetime; exp an hour ahead without iat is accepted.
#[test]
fn time_6_no_lifetime_cap() {
    let t = k1().sign(
        BASE_HEADER,
        &claims_with(
            r#""exp":1747124600,"iat":1747124243"#,
            r#""exp":1747127900"#,
        ),
    );
    assert_eq!(
        check(&t, &td_bundle()),
        Ok(SpiffeId::parse(CLIENT).unwrap())
    );
}

/// TIME-7: every time check takes `now` as an argument (the host clock in the filter, a fixed
/// clock here); the draft-shaped claims (exp 1747124543, iat 1747124243) are valid at
/// 1747124300 and expired once now reaches exp + leeway.
#[test]
fn time_7_injected_clock() {
    let t = k1().sign(
        BASE_HEADER,
        &claims_with(r#""exp":1747124600"#, r#""exp":1747124543"#),
    );
    let b = td_bundle();
    let at = |now: u64| JwtSvid::decode(&t, MAX)?.verify(&b, &policy(), now);
    assert_eq!(at(NOW), Ok(SpiffeId::parse(CLIENT).unwrap()));
    assert_eq!(at(1_747_124_603), Err(JwtSvidError::Expired));
    assert_eq!(at(1_747_124_602), Ok(SpiffeId::parse(CLIENT).unwrap()));
}

/// BUN-3 / B15: a bundle whose entries are all unusable (only Ed448 OKP keys) leaves the trust
/// domain without keys: every JWT-SVID of it is refused.
#[test]
fn bun_3_b15_no_usable_keys_rejects_all() {
    let doc = r#"{"keys":[{"kty":"OKP","crv":"Ed448","use":"jwt-svid","kid":"k1","x":"AAAA"}]}"#;
    let b = TrustBundle::parse(doc.as_bytes()).unwrap();
    assert!(b.jwt_keys.is_empty() && b.x509_authorities.is_empty());
    assert_eq!(b.skipped.len(), 1);
    let t = k1().sign(BASE_HEADER, BASE_CLAIMS);
    assert_eq!(check(&t, &b), Err(JwtSvidError::UnknownKid("k1".into())));
}
