//! Test-only helpers: deterministic signing keys, their JWKs, and compact JWS minting with any
//! header and claims bytes (so tests can build malformed and hostile tokens).

use crate::b64;
use crate::bundle::TrustBundle;
use jwt_simple::prelude::*;
use std::sync::OnceLock;

/// The fixed clock of requirements §4.2.
pub const NOW: u64 = 1_747_124_300;
/// The issuer identifier of requirements §4.2.
pub const ISSUER: &str = "https://as.example.com";
pub const CLIENT: &str = "spiffe://example.org/my-oauth-client";

/// An elliptic-curve signing key that signs arbitrary signing inputs.
pub enum EcKey {
    P256(p256::ecdsa::SigningKey),
    P384(p384::ecdsa::SigningKey),
    P521(p521::ecdsa::SigningKey),
}

impl EcKey {
    pub fn p256(seed: u8) -> EcKey {
        EcKey::P256(p256::ecdsa::SigningKey::from_slice(&[seed; 32]).unwrap())
    }
    pub fn p384(seed: u8) -> EcKey {
        EcKey::P384(p384::ecdsa::SigningKey::from_slice(&[seed; 48]).unwrap())
    }
    pub fn p521(seed: u8) -> EcKey {
        let mut bytes = [seed; 66];
        bytes[0] = 0; // keep the scalar below the group order
        EcKey::P521(p521::ecdsa::SigningKey::from_slice(&bytes).unwrap())
    }

    fn point(&self) -> (Box<[u8]>, &'static str) {
        match self {
            EcKey::P256(k) => (k.verifying_key().to_sec1_bytes(), "P-256"),
            EcKey::P384(k) => (k.verifying_key().to_sec1_bytes(), "P-384"),
            EcKey::P521(k) => (k.verifying_key().to_sec1_bytes(), "P-521"),
        }
    }

    /// The bundle entry (`use: jwt-svid`) for this key.
    pub fn jwk(&self, kid: &str) -> String {
        let (point, crv) = self.point();
        let coords = point.get(1..).unwrap();
        let (x, y) = coords.split_at(coords.len() / 2);
        format!(
            r#"{{"use":"jwt-svid","kty":"EC","kid":"{kid}","crv":"{crv}","x":"{}","y":"{}"}}"#,
            b64::encode_url(x),
            b64::encode_url(y)
        )
    }

    /// Raw R‖S signature over `input`.
    pub fn raw_signature(&self, input: &[u8]) -> Vec<u8> {
        use p256::ecdsa::signature::Signer;
        match self {
            EcKey::P256(k) => {
                let s: p256::ecdsa::Signature = k.sign(input);
                s.to_bytes().to_vec()
            }
            EcKey::P384(k) => {
                let s: p384::ecdsa::Signature = k.sign(input);
                s.to_bytes().to_vec()
            }
            EcKey::P521(k) => {
                let s: p521::ecdsa::Signature = k.sign(input);
                s.to_bytes().to_vec()
            }
        }
    }

    /// A compact JWS over the given header and claims JSON text.
    pub fn sign(&self, header: &str, claims: &str) -> String {
        let input = format!(
            "{}.{}",
            b64::encode_url(header.as_bytes()),
            b64::encode_url(claims.as_bytes())
        );
        let sig = self.raw_signature(input.as_bytes());
        format!("{input}.{}", b64::encode_url(&sig))
    }
}

/// One RSA-2048 key for the whole test run (generation is slow).
pub fn rsa_key() -> &'static RS256KeyPair {
    static KEY: OnceLock<RS256KeyPair> = OnceLock::new();
    KEY.get_or_init(|| RS256KeyPair::generate(2048).unwrap())
}

pub fn rsa_jwk(kid: &str) -> String {
    let c = rsa_key().public_key().to_components();
    format!(
        r#"{{"use":"jwt-svid","kty":"RSA","kid":"{kid}","n":"{}","e":"{}"}}"#,
        b64::encode_url(&c.n),
        b64::encode_url(&c.e)
    )
}

/// The §4.2 baseline claims, signed with RS256 or PS256 by [`rsa_key`].
pub fn rsa_token(alg: &str, kid: &str) -> String {
    let mut claims = Claims::create(Duration::from_secs(300));
    claims.issued_at = Some(UnixTimeStamp::from_secs(1_747_124_243));
    claims.invalid_before = None;
    claims.expires_at = Some(UnixTimeStamp::from_secs(1_747_124_600));
    claims.subject = Some(CLIENT.to_owned());
    claims.audiences = Some(Audiences::AsString(ISSUER.to_owned()));
    let der = rsa_key().to_der().unwrap();
    match alg {
        "RS256" => RS256KeyPair::from_der(&der)
            .unwrap()
            .with_key_id(kid)
            .sign(claims)
            .unwrap(),
        "PS256" => PS256KeyPair::from_der(&der)
            .unwrap()
            .with_key_id(kid)
            .sign(claims)
            .unwrap(),
        other => panic!("unsupported test alg {other}"),
    }
}

/// A bundle document holding the given JWK entries.
pub fn bundle_json(entries: &[String]) -> String {
    format!(r#"{{"keys":[{}],"spiffe_sequence":1}}"#, entries.join(","))
}

pub fn bundle(entries: &[String]) -> TrustBundle {
    TrustBundle::parse(bundle_json(entries).as_bytes()).unwrap()
}

/// §4.2 baseline header and claims.
pub const BASE_HEADER: &str = r#"{"alg":"ES256","kid":"k1","typ":"JWT"}"#;
pub const BASE_CLAIMS: &str = r#"{"sub":"spiffe://example.org/my-oauth-client","aud":"https://as.example.com","exp":1747124600,"iat":1747124243}"#;

/// A test PKI made with rcgen: roots, intermediates and X509-SVID leaves, valid around
/// [`pki::NOW`].
pub mod pki {
    use rcgen::{
        date_time_ymd, BasicConstraints as RcBasicConstraints, CertificateParams,
        ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
    };

    /// 2026-06-01T00:00:00Z, inside every default validity window below.
    pub const NOW: u64 = 1_780_272_000;

    /// A CA of the test PKI: its parameters and key (to sign with) and its DER.
    pub struct Ca {
        pub params: CertificateParams,
        pub key: KeyPair,
        pub der: Vec<u8>,
    }

    pub fn uri(s: &str) -> SanType {
        SanType::URI(s.try_into().unwrap())
    }

    pub fn ca_params(td: &str) -> CertificateParams {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.subject_alt_names = vec![uri(&format!("spiffe://{td}"))];
        p.is_ca = IsCa::Ca(RcBasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        p.not_before = date_time_ymd(2026, 1, 1);
        p.not_after = date_time_ymd(2027, 1, 1);
        p
    }

    pub fn root(td: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let params = ca_params(td);
        let der = params.self_signed(&key).unwrap().der().to_vec();
        Ca { params, key, der }
    }

    pub fn intermediate(parent: &Ca, td: &str, tweak: impl FnOnce(&mut CertificateParams)) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = ca_params(td);
        params.use_authority_key_identifier_extension = true;
        tweak(&mut params);
        let issuer = Issuer::from_params(&parent.params, &parent.key);
        let der = params.signed_by(&key, &issuer).unwrap().der().to_vec();
        Ca { params, key, der }
    }

    pub fn leaf_params(ids: &[&str]) -> CertificateParams {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.subject_alt_names = ids.iter().map(|id| uri(id)).collect();
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        p.use_authority_key_identifier_extension = true;
        p.not_before = date_time_ymd(2026, 3, 1);
        p.not_after = date_time_ymd(2026, 9, 1);
        p
    }

    pub fn leaf(parent: &Ca, ids: &[&str], tweak: impl FnOnce(&mut CertificateParams)) -> Vec<u8> {
        let key = KeyPair::generate().unwrap();
        let mut params = leaf_params(ids);
        tweak(&mut params);
        let issuer = Issuer::from_params(&parent.params, &parent.key);
        params.signed_by(&key, &issuer).unwrap().der().to_vec()
    }
}
