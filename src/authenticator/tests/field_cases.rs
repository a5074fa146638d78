//! Field cases (`../shared/research/field-cases.md`, FC-01 … FC-33): every parsing and
//! validation sub-input of each case, with the verdict that file gives, through the whole
//! decision (`inspect_head` + `authenticate`) on the file's shared fixture. Host cases (chunked
//! bodies, trailers, VM failures, fetch failures, per-worker fetches, header hygiene) are in
//! `tests/integration/` (see the README's field-case table).

// `&[ca.der.clone()]` reads better in these tests than `std::slice::from_ref(&ca.der)`.
#![allow(clippy::cloned_ref_to_slice_refs)]

use super::*;
use crate::b64;
use crate::client_cert::PresentedChain;
use crate::test_support::pki::{self, Ca};
use sha2::{Digest, Sha256};

const BATCH: &str = "spiffe://example.org/workloads/batch";
/// The shared fixture's good claims and header.
const FC_CLAIMS: &str = r#"{"aud":["https://as.example.com"],"exp":4102444800,"sub":"spiffe://example.org/my-oauth-client"}"#;
const FC_HEADER: &str = r#"{"alg":"ES256","kid":"k1","typ":"JWT"}"#;
const FC_HEADER_B64: &str = "eyJhbGciOiJFUzI1NiIsImtpZCI6ImsxIiwidHlwIjoiSldUIn0";
const FC_CLAIMS_B64: &str = "eyJhdWQiOlsiaHR0cHM6Ly9hcy5leGFtcGxlLmNvbSJdLCJleHAiOjQxMDI0NDQ4MDAsInN1YiI6InNwaWZmZTovL2V4YW1wbGUub3JnL215LW9hdXRoLWNsaWVudCJ9";

/// The fixture: example.org and partner.example.net, the exact client `my-oauth-client` (its
/// client id is its SPIFFE ID) and the prefix registration `workloads/*`.
fn fc_config() -> Config {
    Config::parse(
        br#"{"issuer":"https://as.example.com","token_paths":["/token"],
        "trust_domains":{
          "example.org":{"bundle_endpoint":{"cluster":"b_org","authority":"bundle.example.com","path":"/bundle.json"}},
          "partner.example.net":{"bundle_endpoint":{"cluster":"b_partner","authority":"bundle.partner.example.net","path":"/bundle.json"}}},
        "clients":[{"spiffe_id":"spiffe://example.org/my-oauth-client"},
                   {"spiffe_id":"spiffe://example.org/workloads/*"}]}"#,
    )
    .unwrap()
}

fn k1() -> EcKey {
    EcKey::p256(1)
}

/// example.org: `k1` and, when given, an x509-svid authority; partner.example.net: its own key.
fn fc_bundles(root: Option<&Ca>) -> Bundles {
    let mut org = bundle(&[k1().jwk("k1")]);
    if let Some(root) = root {
        org.x509_authorities.push(root.der.clone());
    }
    fc_bundles_with(org)
}

fn fc_bundles_with(org: TrustBundle) -> Bundles {
    let mut m = HashMap::new();
    m.insert("example.org".to_owned(), Arc::new(org));
    m.insert(
        "partner.example.net".to_owned(),
        Arc::new(bundle(&[EcKey::p256(5).jwk("p1")])),
    );
    Bundles(m)
}

fn good() -> String {
    k1().sign(FC_HEADER, FC_CLAIMS)
}

fn claims_with(replace: &str, with: &str) -> String {
    assert!(FC_CLAIMS.contains(replace), "{replace}");
    FC_CLAIMS.replacen(replace, with, 1)
}

fn body(assertion: &str, extra: &str) -> String {
    body_with(assertion, extra)
}

/// The verdict for a JWT-SVID request: the head is inspected first, as the filter does.
fn verdict_for(head: &RequestHead<'_>, body: &str, b: &Bundles) -> Verdict {
    let c = fc_config();
    match inspect_head(&c, head) {
        HeadAction::ReadBody => decide_twice(&c, head, body, None, b, NOW),
        HeadAction::Reject(r) => Verdict::Reject(r),
        HeadAction::PassThrough => Verdict::PassThrough,
    }
}

fn verdict(body: &str) -> Verdict {
    verdict_for(&post(), body, &fc_bundles(None))
}

fn accepted(spiffe_id: &str) -> Verdict {
    Verdict::Authenticated {
        spiffe_id: SpiffeId::parse(spiffe_id).unwrap(),
        client_id: spiffe_id.to_owned(),
        credential: Credential::JwtSvid,
    }
}

fn code(v: Verdict) -> ErrorCode {
    rejected(v).0
}

/// Asserts `invalid_client` for each token as `client_assertion`.
fn all_invalid_client(tokens: &[String]) {
    for t in tokens {
        let v = verdict(&body(t, ""));
        assert_eq!(code(v), ErrorCode::InvalidClient, "{:.120}", t);
    }
}

fn x509_verdict(body: &str, leaf: Vec<u8>, intermediates: Vec<Vec<u8>>, root: &Ca) -> Verdict {
    let chain = PresentedChain::new(leaf, intermediates);
    decide_twice(
        &fc_config(),
        &post(),
        body,
        Some(&chain),
        &fc_bundles(Some(root)),
        pki::NOW,
    )
}

const CLIENT_ID_ENC: &str = "client_id=spiffe%3A%2F%2Fexample.org%2Fmy-oauth-client";

// ------------------------------------------------------------ A. claims and signature

/// FC-01 a / c: no `aud`, or `aud` empty, `""` or null → invalid_client. (FC-01 b, a
/// configuration without the issuer, is `config::tests::aud_7_issuer_required_and_checked`
/// and `tests/integration/test_config_refused.py`.)
#[test]
fn fc_01_missing_or_empty_aud() {
    let no_aud = r#"{"exp":4102444800,"sub":"spiffe://example.org/my-oauth-client"}"#;
    // The file's exact claims segment for (a).
    assert_eq!(
        b64::encode_url(no_aud.as_bytes()),
        "eyJleHAiOjQxMDI0NDQ4MDAsInN1YiI6InNwaWZmZTovL2V4YW1wbGUub3JnL215LW9hdXRoLWNsaWVudCJ9"
    );
    let mut tokens = vec![k1().sign(FC_HEADER, no_aud)];
    for aud in [r#""aud":[]"#, r#""aud":"""#, r#""aud":null"#] {
        tokens.push(k1().sign(
            FC_HEADER,
            &claims_with(r#""aud":["https://as.example.com"]"#, aud),
        ));
    }
    all_invalid_client(&tokens);
}

/// FC-02 a – c: another audience beside the issuer, the token endpoint URL, a trailing slash
/// or other case → invalid_client; FC-02 d: the issuer as a bare string → accepted.
#[test]
fn fc_02_audience_is_exactly_the_issuer() {
    let aud = |v: &str| {
        k1().sign(
            FC_HEADER,
            &claims_with(r#""aud":["https://as.example.com"]"#, v),
        )
    };
    all_invalid_client(&[
        aud(r#""aud":["https://as.example.com","https://other-as.example.net"]"#),
        aud(r#""aud":["https://as.example.com/token"]"#),
        aud(r#""aud":"https://as.example.com/token""#),
        aud(r#""aud":"https://as.example.com/""#),
        aud(r#""aud":"https://AS.example.com""#),
        aud(r#""aud":["https://as.example.com/"]"#),
    ]);
    assert_eq!(
        verdict(&body(&aud(r#""aud":"https://as.example.com""#), "")),
        accepted(CLIENT)
    );
    assert_eq!(verdict(&body(&good(), "")), accepted(CLIENT));
}

/// FC-03: ECDSA r = s = 0 (86 × `A`), r = n, s = n, and r = 0 with a valid s, under every kid
/// of the bundle (and the ES384 form) → invalid_client.
#[test]
fn fc_03_psychic_signature() {
    // P-256 group order n.
    const N: [u8; 32] = [
        0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63,
        0x25, 0x51,
    ];
    let k2 = EcKey::p256(2);
    let b = fc_bundles_with(bundle(&[k1().jwk("k1"), k2.jwk("k2")]));
    for kid in ["k1", "k2"] {
        let header = FC_HEADER.replace("k1", kid);
        let input = format!("{}.{FC_CLAIMS_B64}", b64::encode_url(header.as_bytes()));
        let valid = if kid == "k1" { k1() } else { EcKey::p256(2) }.raw_signature(input.as_bytes());
        let (_, valid_s) = valid.split_at(32);
        let sigs: Vec<Vec<u8>> = vec![
            vec![0; 64],
            [N, N].concat(),
            [&N[..], valid_s].concat(),
            [&valid[..32], &N[..]].concat(),
            [&[0u8; 32][..], valid_s].concat(),
        ];
        for sig in sigs {
            let token = format!("{input}.{}", b64::encode_url(&sig));
            assert_eq!(
                code(verdict_for(&post(), &body(&token, ""), &b)),
                ErrorCode::InvalidClient,
                "{kid} {sig:02x?}"
            );
        }
        // The untouched signature verifies: the rejections are the signature's.
        let token = format!("{input}.{}", b64::encode_url(&valid));
        assert_eq!(
            verdict_for(&post(), &body(&token, ""), &b),
            accepted(CLIENT)
        );
    }
    // The exact token of the file.
    let token = format!("{FC_HEADER_B64}.{FC_CLAIMS_B64}.{}", "A".repeat(86));
    all_invalid_client(&[token]);
    // ES384 with a zero signature.
    let k384 = EcKey::p384(3);
    let b384 = fc_bundles_with(bundle(&[k384.jwk("k384")]));
    let input = format!(
        "{}.{FC_CLAIMS_B64}",
        b64::encode_url(br#"{"alg":"ES384","kid":"k384"}"#)
    );
    let token = format!("{input}.{}", b64::encode_url(&[0u8; 96]));
    assert_eq!(
        code(verdict_for(&post(), &body(&token, ""), &b384)),
        ErrorCode::InvalidClient
    );
}

fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |b: u8| k.iter().map(|x| x ^ b).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(msg)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .to_vec()
}

/// k1's public key as SPKI PEM, and its raw x‖y.
fn k1_public_forms() -> (String, Vec<u8>) {
    let EcKey::P256(k) = k1() else { unreachable!() };
    let point = k.verifying_key().to_sec1_bytes();
    let mut der = hex_bytes("3059301306072a8648ce3d020106082a8648ce3d030107034200");
    der.extend_from_slice(&point);
    let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    let pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        lines.join("\n")
    );
    (pem, point[1..].to_vec())
}

fn hex_bytes(h: &str) -> Vec<u8> {
    (0..h.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
        .collect()
}

/// FC-04: `alg: none` with an empty signature; HS256 keyed with k1's SPKI PEM, its JWK JSON
/// text and its raw x‖y; `None`, `NONE`, `ES256K`, `EdDSA`, `HS512`, `""` and a missing `alg`
/// → invalid_client, before any key lookup (an unknown kid brings no fetch forward).
#[test]
fn fc_04_token_chooses_the_algorithm() {
    let none = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{FC_CLAIMS_B64}.");
    let mut tokens = vec![none];
    let (pem, xy) = k1_public_forms();
    let hs_input = format!(
        "{}.{FC_CLAIMS_B64}",
        b64::encode_url(br#"{"alg":"HS256","kid":"k1"}"#)
    );
    for secret in [pem.into_bytes(), k1().jwk("k1").into_bytes(), xy] {
        let mac = hmac_sha256(&secret, hs_input.as_bytes());
        tokens.push(format!("{hs_input}.{}", b64::encode_url(&mac)));
    }
    for alg in [
        r#""alg":"None","#,
        r#""alg":"NONE","#,
        r#""alg":"ES256K","#,
        r#""alg":"EdDSA","#,
        r#""alg":"HS512","#,
        r#""alg":"","#,
        "",
    ] {
        tokens.push(k1().sign(&FC_HEADER.replace(r#""alg":"ES256","#, alg), FC_CLAIMS));
    }
    all_invalid_client(&tokens);
    // With a kid the bundle lacks, the refusal still precedes any key lookup: nothing awaits a
    // bundle, so no fetch is brought forward.
    for alg in ["none", "HS256", "ES256K"] {
        let t = k1().sign(
            &format!(r#"{{"alg":"{alg}","kid":"not-in-bundle"}}"#),
            FC_CLAIMS,
        );
        match verdict(&body(&t, "")) {
            Verdict::Reject(r) => {
                assert_eq!(r.code, ErrorCode::InvalidClient);
                assert!(r.reason.contains("alg"), "{}", r.reason);
                assert_eq!(r.awaits_bundle, None);
            }
            other => panic!("{alg}: {other:?}"),
        }
    }
}

/// FC-07: the file's bundle with a post-quantum, an Ed448 and a broken RSA entry beside k1:
/// the good token is accepted, tokens naming the unusable entries are invalid_client; a
/// structurally broken document is a failed fetch, not an empty trust set.
#[test]
fn fc_07_one_bad_jwk_does_not_poison_the_set() {
    let doc = format!(
        r#"{{"keys":[{{"use":"jwt-svid","kty":"AKP","alg":"ML-DSA-44","kid":"pq-1","pub":"AAAA"}},{{"use":"jwt-svid","kty":"OKP","crv":"Ed448","kid":"ed-1","x":"AAAA"}},{{"use":"jwt-svid","kty":"RSA","kid":"r-bad","n":"AQAB==","e":"AQAB"}},{}],"spiffe_sequence":12}}"#,
        k1().jwk("k1")
    );
    let b = fc_bundles_with(TrustBundle::parse(doc.as_bytes()).unwrap());
    assert_eq!(
        verdict_for(&post(), &body(&good(), ""), &b),
        accepted(CLIENT)
    );
    for kid in ["pq-1", "ed-1", "r-bad"] {
        for alg in ["ES256", "RS256", "EdDSA"] {
            let t = k1().sign(&format!(r#"{{"alg":"{alg}","kid":"{kid}"}}"#), FC_CLAIMS);
            assert_eq!(
                code(verdict_for(&post(), &body(&t, ""), &b)),
                ErrorCode::InvalidClient,
                "{kid} {alg}"
            );
        }
    }
    for broken in [r#"{"keys":{"a":1}}"#, r#"{"keys":"x"}"#, "not json"] {
        assert!(TrustBundle::parse(broken.as_bytes()).is_err(), "{broken}");
    }
}

/// FC-09: a token naming an unconfigured trust domain, an attacker `iss` and a `jku` →
/// invalid_client, and no bundle is awaited (so nothing is fetched); the X.509 variant, a leaf
/// with an AIA caIssuers URL from an unknown CA, is invalid_client too (nothing is ever fetched
/// for a certificate). The zero-outbound-calls half is `test_field_cases.py` in Envoy.
#[test]
fn fc_09_no_key_source_from_the_token() {
    let claims = r#"{"sub":"spiffe://unconfigured.example.net/x","iss":"https://attacker.example.net","aud":["https://as.example.com"],"exp":4102444800}"#;
    let attacker = EcKey::p256(9);
    for header in [
        r#"{"alg":"ES256","kid":"z","jku":"https://169.254.169.254/latest/meta-data/"}"#,
        r#"{"alg":"ES256","kid":"z"}"#,
    ] {
        match verdict(&body(&attacker.sign(header, claims), "")) {
            Verdict::Reject(r) => {
                assert_eq!(r.code, ErrorCode::InvalidClient, "{header}");
                assert_eq!(r.awaits_bundle, None, "{header}");
            }
            other => panic!("{header}: {other:?}"),
        }
    }
    // AIA: SEQUENCE { SEQUENCE { id-ad-caIssuers, [6] "http://attacker.example.net/ca.der" } }.
    let url = b"http://attacker.example.net/ca.der";
    let mut access = hex_bytes("06082b06010505073002");
    access.push(0x86);
    access.push(url.len() as u8);
    access.extend_from_slice(url);
    let mut desc = vec![0x30, access.len() as u8];
    desc.extend_from_slice(&access);
    let mut aia = vec![0x30, desc.len() as u8];
    aia.extend_from_slice(&desc);
    let org = pki::root("example.org");
    let attacker_ca = pki::root("example.org");
    let leaf = pki::leaf(&attacker_ca, &[CLIENT], |p| {
        p.custom_extensions
            .push(rcgen::CustomExtension::from_oid_content(
                &[1, 3, 6, 1, 5, 5, 7, 1, 1],
                aia.clone(),
            ))
    });
    assert_eq!(
        code(x509_verdict(CLIENT_ID_ENC, leaf, vec![], &org)),
        ErrorCode::InvalidClient
    );
}

/// FC-10 a: an `iss` claim is accepted and ignored; b: an unregistered `sub`; c: no `sub`, or
/// `"sub": 42` → invalid_client (401), never another code.
#[test]
fn fc_10_optional_claims_and_unknown_clients() {
    let with_iss = k1().sign(
        FC_HEADER,
        &FC_CLAIMS.replacen('{', r#"{"iss":"https://oidc.example.org","#, 1),
    );
    assert_eq!(verdict(&body(&with_iss, "")), accepted(CLIENT));
    let sub = |v: &str| {
        k1().sign(
            FC_HEADER,
            &claims_with(r#""sub":"spiffe://example.org/my-oauth-client""#, v),
        )
    };
    all_invalid_client(&[
        sub(r#""sub":"spiffe://example.org/not-registered""#),
        sub(r#""x":1"#),
        sub(r#""sub":42"#),
    ]);
    assert_eq!(ErrorCode::InvalidClient.status(), 401);
}

// ------------------------------------------------------------ B. request parsing

/// FC-11: two valid assertions for different clients, a repeated `client_assertion_type`, a
/// repeated `client_id`, and an empty copy before the real assertion → invalid_request (400).
#[test]
fn fc_11_duplicate_parameters() {
    let batch = k1().sign(FC_HEADER, &FC_CLAIMS.replace(CLIENT, BATCH));
    assert_eq!(verdict(&body(&batch, "")), accepted(BATCH));
    let bodies = [
        body(&good(), &format!("&client_assertion={batch}")),
        body(&good(), &format!("&client_assertion_type={TYPE_ENC}")),
        body(&good(), "&client_id=spiffe%3A%2F%2Fexample.org%2Fmy-oauth-client&client_id=spiffe%3A%2F%2Fexample.org%2Fmy-oauth-client"),
        format!("grant_type=client_credentials&client_assertion_type={TYPE_ENC}&client_assertion=&client_assertion={}", good()),
    ];
    for b in bodies {
        assert_eq!(code(verdict(&b)), ErrorCode::InvalidRequest, "{:.200}", b);
        assert_eq!(ErrorCode::InvalidRequest.status(), 400);
    }
}

/// FC-12 (RFC 6749 §2.3 / §5.2, README "Mixed methods"): a second mechanism beside a jwt-spiffe
/// assertion is invalid_request (400) whatever either credential is worth — a) Basic
/// credentials (any scheme, no challenge since the code is not invalid_client), b) a
/// client_secret, c) an X509-SVID of another ID; d) an X509-SVID with the `client_id` of
/// another client and e) an assertion with the `client_id` of another client are
/// invalid_client (401). Nothing is forwarded in any of them.
#[test]
fn fc_12_more_than_one_mechanism() {
    let forged = EcKey::p256(9).sign(FC_HEADER, FC_CLAIMS);
    for assertion in [good(), forged.clone(), "not-a-jwt".to_owned()] {
        for auth in ["Basic bXktb2F1dGgtY2xpZW50Ondyb25n", "Bearer x", "Basic"] {
            let head = RequestHead {
                authorization: Some(auth),
                ..post()
            };
            let (c, reason) =
                rejected(verdict_for(&head, &body(&assertion, ""), &fc_bundles(None)));
            assert_eq!(c, ErrorCode::InvalidRequest, "{auth}");
            assert!(reason.contains("Authorization"), "{reason}");
            let response = crate::oauth_error::error_response(c, Some(auth), ISSUER);
            assert_eq!(response.status, 400);
            assert!(response
                .headers
                .iter()
                .all(|(n, _)| *n != "www-authenticate"));
        }
        let (c, reason) = rejected(verdict(&body(&assertion, "&client_secret=wrong")));
        assert_eq!(c, ErrorCode::InvalidRequest);
        assert!(reason.contains("client_secret"), "{reason}");
    }
    // c) certificate for workloads/batch, assertion for my-oauth-client — valid or forged.
    let org = pki::root("example.org");
    for assertion in [good(), forged] {
        let leaf = pki::leaf(&org, &[BATCH], |_| {});
        assert_eq!(
            code(x509_verdict(&body(&assertion, ""), leaf, vec![], &org)),
            ErrorCode::InvalidRequest
        );
    }
    // d) X509-SVID of my-oauth-client, client_id of workloads/batch.
    let mine = pki::leaf(&org, &[CLIENT], |_| {});
    let d =
        "grant_type=client_credentials&client_id=spiffe%3A%2F%2Fexample.org%2Fworkloads%2Fbatch";
    assert_eq!(
        code(x509_verdict(d, mine.clone(), vec![], &org)),
        ErrorCode::InvalidClient
    );
    // e) assertion for my-oauth-client, client_id of workloads/batch.
    let e = body(
        &good(),
        "&client_id=spiffe%3A%2F%2Fexample.org%2Fworkloads%2Fbatch",
    );
    assert_eq!(code(verdict(&e)), ErrorCode::InvalidClient);
    // The shapes that are one mechanism: an X509-SVID of the assertion's own ID is incidental
    // (REQ-10: the assertion decides); a certificate beside a secret is left to the AS.
    assert_eq!(
        x509_verdict(&body(&good(), ""), mine.clone(), vec![], &org),
        accepted(CLIENT)
    );
    assert_eq!(
        x509_verdict(
            &format!("{CLIENT_ID_ENC}&client_secret=s"),
            mine,
            vec![],
            &org
        ),
        Verdict::PassThrough
    );
}

/// FC-13: content types a / b accepted, c (JSON) / d (none) invalid_request; encodings e
/// (raw colons), f (lower-case hex), h (encoded `client_id` over mTLS) accepted; g (double
/// encoded type) invalid_request; i (`+` in the SPIFFE ID) invalid_client; j (malformed
/// escapes) and k (`%00` in any value) invalid_request.
#[test]
fn fc_13_content_type_and_form_decoding() {
    let ok = body(&good(), "");
    for ct in [
        "application/x-www-form-urlencoded; charset=UTF-8",
        r#"Application/X-WWW-Form-Urlencoded;charset="utf-8""#,
    ] {
        let head = RequestHead {
            content_type: Some(ct),
            ..post()
        };
        assert_eq!(
            verdict_for(&head, &ok, &fc_bundles(None)),
            accepted(CLIENT),
            "{ct}"
        );
    }
    let json = format!(
        r#"{{"client_assertion_type":"{JWT_SPIFFE}","client_assertion":"{}"}}"#,
        good()
    );
    for (ct, b) in [
        (Some("application/json"), json.as_str()),
        (None, ok.as_str()),
    ] {
        let head = RequestHead {
            content_type: ct,
            ..post()
        };
        assert_eq!(
            code(verdict_for(&head, b, &fc_bundles(None))),
            ErrorCode::InvalidRequest,
            "{ct:?}"
        );
    }
    let with_type = |t: &str| {
        format!(
            "grant_type=client_credentials&client_assertion_type={t}&client_assertion={}",
            good()
        )
    };
    assert_eq!(verdict(&with_type(JWT_SPIFFE)), accepted(CLIENT));
    assert_eq!(
        verdict(&with_type(&TYPE_ENC.replace("%3A", "%3a"))),
        accepted(CLIENT)
    );
    assert_eq!(
        code(verdict(&with_type(&TYPE_ENC.replace("%3A", "%253A")))),
        ErrorCode::InvalidRequest
    );
    // h / i over mTLS.
    let org = pki::root("example.org");
    let leaf = || pki::leaf(&org, &[CLIENT], |_| {});
    let by_cert = Verdict::Authenticated {
        spiffe_id: SpiffeId::parse(CLIENT).unwrap(),
        client_id: CLIENT.to_owned(),
        credential: Credential::X509Svid,
    };
    assert_eq!(
        x509_verdict(
            &format!("grant_type=client_credentials&{CLIENT_ID_ENC}"),
            leaf(),
            vec![],
            &org
        ),
        by_cert
    );
    assert_eq!(
        code(x509_verdict(
            "grant_type=client_credentials&client_id=spiffe://example.org/my+oauth-client",
            leaf(),
            vec![],
            &org
        )),
        ErrorCode::InvalidClient
    );
    for bad in [
        body("ab%zz", ""),
        body(&good(), "&x=%3"),
        format!("{}%3", body(&good(), "")),
        body(&good(), "&client_id=my%00client"),
        body(&format!("{}%00", good()), ""),
        body(&good(), "&grant_type=client%00credentials"),
        body(&good(), "&scope=a%00b"),
        format!(
            "grant_type=client_credentials&client_assertion_type={TYPE_ENC}%00&client_assertion={}",
            good()
        ),
    ] {
        assert_eq!(
            code(verdict(&bad)),
            ErrorCode::InvalidRequest,
            "{:.200}",
            bad
        );
    }
}

// ------------------------------------------------------------ D. X509-SVID

/// Which sub-input, the leaf, the intermediates sent.
type Case = (&'static str, Vec<u8>, Vec<Vec<u8>>);

/// FC-22 a – h: a CA leaf, keyCertSign, cRLSign, keyEncipherment only, a trust-domain-only ID,
/// an unknown critical extension, an intermediate that expired yesterday, a leaf valid only in
/// an hour → invalid_client.
#[test]
fn fc_22_leaf_profile() {
    use rcgen::{date_time_ymd, BasicConstraints, IsCa, KeyUsagePurpose};
    let org = pki::root("example.org");
    let body = format!("grant_type=client_credentials&{CLIENT_ID_ENC}");
    let mut cases: Vec<Case> = vec![
        (
            "a",
            pki::leaf(&org, &[CLIENT], |p| {
                p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained)
            }),
            vec![],
        ),
        (
            "b",
            pki::leaf(&org, &[CLIENT], |p| {
                p.key_usages.push(KeyUsagePurpose::KeyCertSign)
            }),
            vec![],
        ),
        (
            "c",
            pki::leaf(&org, &[CLIENT], |p| {
                p.key_usages.push(KeyUsagePurpose::CrlSign)
            }),
            vec![],
        ),
        (
            "d",
            pki::leaf(&org, &[CLIENT], |p| {
                p.key_usages = vec![KeyUsagePurpose::KeyEncipherment]
            }),
            vec![],
        ),
        (
            "e",
            pki::leaf(&org, &["spiffe://example.org"], |_| {}),
            vec![],
        ),
        (
            "f",
            pki::leaf(&org, &[CLIENT], |p| {
                let mut ext = rcgen::CustomExtension::from_oid_content(
                    &[1, 3, 6, 1, 4, 1, 55555, 1],
                    vec![0x05, 0x00],
                );
                ext.set_criticality(true);
                p.custom_extensions.push(ext);
            }),
            vec![],
        ),
        (
            "h",
            pki::leaf(&org, &[CLIENT], |p| {
                p.not_before = date_time_ymd(2026, 6, 1) + std::time::Duration::from_secs(3600)
            }),
            vec![],
        ),
    ];
    // pki::NOW is 2026-06-01T00:00:00Z: the intermediate expired the day before.
    let expired = pki::intermediate(&org, "example.org", |p| {
        p.not_before = date_time_ymd(2026, 1, 1);
        p.not_after = date_time_ymd(2026, 5, 31);
    });
    cases.push((
        "g",
        pki::leaf(&expired, &[CLIENT], |_| {}),
        vec![expired.der.clone()],
    ));
    for (which, leaf, mids) in cases {
        assert_eq!(
            code(x509_verdict(&body, leaf, mids, &org)),
            ErrorCode::InvalidClient,
            "FC-22 {which}"
        );
    }
    // Control: the same request with a proper leaf is accepted.
    assert!(matches!(
        x509_verdict(&body, pki::leaf(&org, &[CLIENT], |_| {}), vec![], &org),
        Verdict::Authenticated { .. }
    ));
}

/// FC-23 a – c: two SPIFFE URI SANs, a SPIFFE and an https URI SAN, and no URI SAN (DNS only)
/// with `client_id` = my-oauth-client → invalid_client; the DNS-only certificate is not
/// passed to the AS as an incidental one, since the client it names is a SPIFFE client here.
#[test]
fn fc_23_one_uri_san_exactly() {
    let org = pki::root("example.org");
    let body = format!("grant_type=client_credentials&{CLIENT_ID_ENC}");
    let dns_only = pki::leaf(&org, &[], |p| {
        p.subject_alt_names = vec![rcgen::SanType::DnsName(
            "my-oauth-client.example.org".try_into().unwrap(),
        )]
    });
    for (which, leaf) in [
        ("a", pki::leaf(&org, &[BATCH, CLIENT], |_| {})),
        (
            "b",
            pki::leaf(&org, &[CLIENT, "https://example.org/whatever"], |_| {}),
        ),
        ("c", dns_only.clone()),
    ] {
        assert_eq!(
            code(x509_verdict(&body, leaf, vec![], &org)),
            ErrorCode::InvalidClient,
            "FC-23 {which}"
        );
    }
    // A registered client id names a SPIFFE client too; a client unknown here is the AS's.
    assert_eq!(
        x509_verdict(
            "grant_type=client_credentials&client_id=someone-else",
            dns_only,
            vec![],
            &org
        ),
        Verdict::PassThrough
    );
}

// ------------------------------------------------------------ E. SPIFFE IDs

/// FC-27: every malformed or non-canonical `sub` (and the same strings as URI SANs) →
/// invalid_client; under the prefix registration `workloads/*`, `/workloads-evil/a`,
/// `/workloads` and `/workloads/` → invalid_client, `/workloads/a/b` accepted. (A `*` other
/// than a trailing `/*` in a registration is `config::tests::fc_27_prefix_registrations`.)
#[test]
fn fc_27_spiffe_id_grammar_and_prefixes() {
    let long = format!("spiffe://example.org/{}", "a".repeat(2100 - 21));
    assert_eq!(long.len(), 2100);
    let malformed = [
        "spiffe://example.org/my-oauth-client/",
        "spiffe://example.org//my-oauth-client",
        "spiffe://example.org/./my-oauth-client",
        "spiffe://example.org/a/../my-oauth-client",
        "spiffe://example.org/my%2Doauth-client",
        "spiffe://EXAMPLE.org/my-oauth-client",
        "SPIFFE://example.org/my-oauth-client",
        "spiffe://example.org:443/my-oauth-client",
        "spiffe://user@example.org/my-oauth-client",
        "spiffe://example.org/my-oauth-client?x=1",
        "spiffe://example.org/my-oauth-client#f",
        "xspiffe://example.org/my-oauth-client",
        "https://h.example.org/spiffe://example.org/my-oauth-client",
        // Valid syntax, but not the registered (case-sensitive) path.
        "spiffe://example.org/My-OAuth-Client",
        long.as_str(),
        "spiffe://example.org/workloads-evil/a",
        "spiffe://example.org/workloads",
        "spiffe://example.org/workloads/",
    ];
    let sub = |id: &str| k1().sign(FC_HEADER, &FC_CLAIMS.replace(CLIENT, id));
    for id in malformed {
        assert_eq!(
            code(verdict(&body(&sub(id), ""))),
            ErrorCode::InvalidClient,
            "{id:.80}"
        );
    }
    assert_eq!(
        verdict(&body(&sub("spiffe://example.org/workloads/a/b"), "")),
        accepted("spiffe://example.org/workloads/a/b")
    );
    // The same strings as the URI SAN of an otherwise valid X509-SVID.
    let org = pki::root("example.org");
    for id in malformed {
        let Ok(uri) = rcgen::string::Ia5String::try_from(id) else {
            continue;
        };
        let leaf = pki::leaf(&org, &[], |p| {
            p.subject_alt_names = vec![rcgen::SanType::URI(uri)]
        });
        let body = format!(
            "grant_type=client_credentials&client_id={}",
            form_encode(id)
        );
        assert_eq!(
            code(x509_verdict(&body, leaf, vec![], &org)),
            ErrorCode::InvalidClient,
            "SAN {id:.80}"
        );
    }
    let ab = "spiffe://example.org/workloads/a/b";
    let leaf = pki::leaf(&org, &[ab], |_| {});
    assert!(matches!(
        x509_verdict(
            &format!("client_id={}", form_encode(ab)),
            leaf,
            vec![],
            &org
        ),
        Verdict::Authenticated { .. }
    ));
}

// ------------------------------------------------------------ F. JOSE robustness

/// FC-28: `S!!!!`, `S==`, the standard alphabet, flipped trailing bits, `H=`, an inserted
/// newline, a DER signature and two extra signature bytes → invalid_client.
#[test]
fn fc_28_non_canonical_encodings() {
    // A signature containing both `-` and `_`, so the standard-alphabet variant differs.
    let (t, h, p, s) = (0u8..=255)
        .map(|i| {
            let t = k1().sign(
                FC_HEADER,
                &FC_CLAIMS.replacen('{', &format!(r#"{{"n":{i},"#), 1),
            );
            let mut parts = t.split('.').map(str::to_owned);
            let (h, p, s) = (
                parts.next().unwrap(),
                parts.next().unwrap(),
                parts.next().unwrap(),
            );
            (t, h, p, s)
        })
        .find(|(_, _, _, s)| s.contains('-') && s.contains('_'))
        .unwrap();
    assert_eq!(verdict(&body(&t, "")), accepted(CLIENT));
    let last = s.chars().last().unwrap();
    let flipped = match last {
        'A' => 'B',
        'Q' => 'R',
        'g' => 'h',
        'w' => 'x',
        other => panic!("ES256 signature ends in {other}"),
    };
    let raw = b64::decode_url(&s).unwrap();
    let der = p256::ecdsa::Signature::from_slice(&raw).unwrap().to_der();
    let mut longer = raw.clone();
    longer.extend_from_slice(&[0, 0]);
    let tokens = [
        format!("{t}!!!!"),
        format!("{t}=="),
        format!("{h}.{p}.{}", s.replace('-', "+").replace('_', "/")),
        format!("{h}.{p}.{}{flipped}", &s[..s.len() - 1]),
        format!("{h}=.{p}.{s}"),
        format!("{h}.{p}\n.{s}"),
        format!("{h}.{p}.{}", b64::encode_url(der.as_bytes())),
        format!("{h}.{p}.{}", b64::encode_url(&longer)),
    ];
    for token in tokens {
        // Sent percent-encoded, so the form carries exactly these characters.
        let b = body(&form_encode(&token), "");
        assert_eq!(code(verdict(&b)), ErrorCode::InvalidClient, "{token}");
    }
}

/// FC-29: a million dots (a body over the limit: 413), the 5- and 2-segment shapes, a
/// 21,830-character signature, a header nested 10,000 arrays deep, a 1 MB `kid` and 64 KB of
/// claims → invalid_client, or 413 for a body over `limits.max_body_bytes`; within the body
/// limit, dots and long segments are cut off by `max_assertion_bytes` before any split.
#[test]
fn fc_29_oversized_and_malformed_tokens() {
    assert_eq!(
        code(verdict(&body(&".".repeat(1_000_000), ""))),
        ErrorCode::BodyTooLarge
    );
    assert_eq!(ErrorCode::BodyTooLarge.status(), 413);
    assert_eq!(
        code(verdict(&body(&".".repeat(60_000), ""))),
        ErrorCode::InvalidClient
    );
    let nested = format!(
        r#"{{"alg":"ES256","x":{}{}}}"#,
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let kid_1mb = format!(r#"{{"alg":"ES256","kid":"{}"}}"#, "k".repeat(1 << 20));
    let big_claims =
        FC_CLAIMS.replacen('{', &format!(r#"{{"pad":"{}","#, "x".repeat(64 * 1024)), 1);
    let (h, rest) = good()
        .split_once('.')
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .unwrap();
    let (p, _) = rest.split_once('.').unwrap();
    let cases = [
        ("a.b.c.d.e".to_owned(), ErrorCode::InvalidClient),
        ("a.b".to_owned(), ErrorCode::InvalidClient),
        (
            format!("{h}.{p}.{}", "A".repeat(21_830)),
            ErrorCode::InvalidClient,
        ),
        (k1().sign(&nested, FC_CLAIMS), ErrorCode::InvalidClient),
        (k1().sign(&kid_1mb, FC_CLAIMS), ErrorCode::BodyTooLarge),
        (k1().sign(FC_HEADER, &big_claims), ErrorCode::BodyTooLarge),
    ];
    for (token, want) in cases {
        assert_eq!(code(verdict(&body(&token, ""))), want, "{:.60}", token);
    }
    // With limits raised to 1 MiB the nested header and a 512 KiB kid are still plain refusals.
    let c = Config::parse(
        br#"{"issuer":"https://as.example.com","token_paths":["/token"],
        "trust_domains":{"example.org":{"bundle_endpoint":{"cluster":"b","authority":"b.example.org","path":"/b"}}},
        "clients":[{"spiffe_id":"spiffe://example.org/my-oauth-client"}],
        "limits":{"max_body_bytes":1048576,"max_assertion_bytes":1048576}}"#,
    )
    .unwrap();
    let kid_512k = format!(r#"{{"alg":"ES256","kid":"{}"}}"#, "k".repeat(512 * 1024));
    for token in [
        k1().sign(&nested, FC_CLAIMS),
        k1().sign(&kid_512k, FC_CLAIMS),
    ] {
        let v = decide_twice(&c, &post(), &body(&token, ""), None, &fc_bundles(None), NOW);
        assert_eq!(code(v), ErrorCode::InvalidClient);
    }
}

/// FC-30: `crit` with an extension, `crit` with `b64`, `typ: at+jwt` (signed by k1), and an
/// embedded `jwk`, a `jku`, an `x5c` (signed by an attacker key) → invalid_client.
#[test]
fn fc_30_forbidden_jose_headers() {
    let a = r#"{"alg":"ES256","kid":"k1","crit":["urn:example:must-bind"],"urn:example:must-bind":true}"#;
    assert_eq!(
        b64::encode_url(a.as_bytes()),
        "eyJhbGciOiJFUzI1NiIsImtpZCI6ImsxIiwiY3JpdCI6WyJ1cm46ZXhhbXBsZTptdXN0LWJpbmQiXSwidXJuOmV4YW1wbGU6bXVzdC1iaW5kIjp0cnVlfQ"
    );
    let attacker = EcKey::p256(9);
    let attacker_jwk = attacker.jwk("a").replace(r#""use":"jwt-svid","#, "");
    let org = pki::root("example.org");
    let self_signed = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        pki::leaf(&org, &[CLIENT], |_| {}),
    );
    all_invalid_client(&[
        k1().sign(a, FC_CLAIMS),
        k1().sign(
            r#"{"alg":"ES256","kid":"k1","crit":["b64"],"b64":false}"#,
            FC_CLAIMS,
        ),
        k1().sign(r#"{"alg":"ES256","kid":"k1","typ":"at+jwt"}"#, FC_CLAIMS),
        attacker.sign(
            &format!(r#"{{"alg":"ES256","jwk":{attacker_jwk}}}"#),
            FC_CLAIMS,
        ),
        attacker.sign(
            r#"{"alg":"ES256","jku":"https://attacker.example.net/k.json","kid":"a"}"#,
            FC_CLAIMS,
        ),
        attacker.sign(
            &format!(r#"{{"alg":"ES256","x5c":["{self_signed}"]}}"#),
            FC_CLAIMS,
        ),
    ]);
}

/// FC-33: RSA entries of 1024 and 512 bits, with e = 1, or an even exponent, are ignored when
/// the bundle is parsed (the rest of it keeps working); an RS256 token naming one →
/// invalid_client.
#[test]
fn fc_33_weak_rsa_keys() {
    let c = rsa_key().public_key().to_components();
    let n2048 = b64::encode_url(&c.n);
    let entry = |n: &str, e: &str| {
        format!(r#"{{"use":"jwt-svid","kty":"RSA","kid":"r-weak","n":"{n}","e":"{e}"}}"#)
    };
    // Odd moduli of the stated sizes (the top bit set).
    let n1024 = b64::encode_url(&[[0xc3u8; 127].as_slice(), &[0x01]].concat());
    let n512 = b64::encode_url(&[[0xc3u8; 63].as_slice(), &[0x01]].concat());
    for weak in [
        entry(&n1024, "AQAB"),
        entry(&n512, "AQAB"),
        entry(&n2048, "AQ"),
        entry(&n2048, "Ag"),
        entry(&n2048, "AQAA"),
    ] {
        let parsed = bundle(&[weak.clone(), k1().jwk("k1")]);
        assert_eq!(parsed.jwt_keys.len(), 1, "{weak:.80}");
        assert_eq!(parsed.skipped.len(), 1, "{weak:.80}");
        let b = fc_bundles_with(parsed);
        assert_eq!(
            code(verdict_for(
                &post(),
                &body(&rsa_token("RS256", "r-weak"), ""),
                &b
            )),
            ErrorCode::InvalidClient
        );
        assert_eq!(
            verdict_for(&post(), &body(&good(), ""), &b),
            accepted(CLIENT)
        );
    }
    // Control: the same token verifies under the 2048-bit key with e = 65537.
    let b = fc_bundles_with(bundle(&[entry(&n2048, "AQAB")]));
    assert_eq!(
        verdict_for(&post(), &body(&rsa_token("RS256", "r-weak"), ""), &b),
        accepted(CLIENT)
    );
}

/// application/x-www-form-urlencoded encoding of everything but unreserved characters.
fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}
