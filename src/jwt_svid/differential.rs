//! JWT-SVID signatures, differential: our verification (RustCrypto `p256`, `p384`, `rsa`) against
//! ring (BoringSSL-derived) on valid tokens and on thousands of signature mutations, for
//! ES256, ES384, RS256 and PS256 (JWT-5, JWT-7; FC-03, FC-28). The claims and `kid` are valid
//! in every variant, so any disagreement is about the signature alone.
//!
//! Known difference, pinned below: ring accepts an ECDSA signature with a high S (n − s) just
//! as RustCrypto does; both accept, so neither is "stricter" there (a verified-credential cache
//! must therefore key on the whole assertion, not on the signed content).

use super::*;
use crate::test_support::*;
use ring::signature::{self as ring_sig, RsaPublicKeyComponents, UnparsedPublicKey};

const MAX: usize = 16 * 1024;

/// ring's verification: (signing input, signature) → accepted.
type RingVerify = Box<dyn Fn(&[u8], &[u8]) -> bool>;

struct Case {
    alg: &'static str,
    token: String,
    bundle: TrustBundle,
    ring: RingVerify,
}

fn policy() -> JwtSvidPolicy<'static> {
    JwtSvidPolicy {
        audience: ISSUER,
        leeway_secs: 60,
    }
}

fn ec_case(alg: &'static str, key: EcKey) -> Case {
    let header = BASE_HEADER.replace("ES256", alg);
    let token = key.sign(&header, BASE_CLAIMS);
    let bundle = bundle(&[key.jwk("k1")]);
    let (point, algorithm): (Vec<u8>, &'static ring_sig::EcdsaVerificationAlgorithm) = match &key {
        EcKey::P256(k) => (
            k.verifying_key().to_sec1_bytes().to_vec(),
            &ring_sig::ECDSA_P256_SHA256_FIXED,
        ),
        EcKey::P384(k) => (
            k.verifying_key().to_sec1_bytes().to_vec(),
            &ring_sig::ECDSA_P384_SHA384_FIXED,
        ),
        EcKey::P521(_) => unreachable!("ring has no P-521"),
    };
    Case {
        alg,
        token,
        bundle,
        ring: Box::new(move |input, sig| {
            UnparsedPublicKey::new(algorithm, &point)
                .verify(input, sig)
                .is_ok()
        }),
    }
}

fn rsa_case(alg: &'static str) -> Case {
    let c = rsa_key().public_key().to_components();
    let algorithm: &'static ring_sig::RsaParameters = match alg {
        "RS256" => &ring_sig::RSA_PKCS1_2048_8192_SHA256,
        _ => &ring_sig::RSA_PSS_2048_8192_SHA256,
    };
    Case {
        alg,
        token: rsa_token(alg, "k1"),
        bundle: bundle(&[rsa_jwk("k1")]),
        ring: Box::new(move |input, sig| {
            RsaPublicKeyComponents { n: &c.n, e: &c.e }
                .verify(algorithm, input, sig)
                .is_ok()
        }),
    }
}

/// xorshift64*: repeatable mutations.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// A mutation of a signature: bit flips, byte changes, truncation, extension, zeroing, and
/// signatures of other keys or other messages spliced in.
fn mutate(g: &mut Gen, sig: &[u8], other: &[u8]) -> Vec<u8> {
    let mut s = sig.to_vec();
    match g.below(8) {
        0 => {
            let i = g.below(s.len());
            s[i] ^= 1 << g.below(8);
        }
        1 => {
            let i = g.below(s.len());
            s[i] = g.next() as u8;
        }
        2 => s.truncate(g.below(s.len())),
        3 => s.extend_from_slice(&[0; 4][..1 + g.below(3)]),
        4 => s.iter_mut().for_each(|b| *b = 0),
        5 => s = other.to_vec(),
        6 => {
            let half = s.len() / 2;
            s[..half].iter_mut().for_each(|b| *b = 0);
        }
        _ => {
            for _ in 0..=g.below(6) {
                let i = g.below(s.len());
                s[i] = s[i].wrapping_add(1);
            }
        }
    }
    s
}

fn ours(case: &Case, token: &str) -> bool {
    JwtSvid::decode(token, MAX).is_ok_and(|svid| svid.verify(&case.bundle, &policy(), NOW).is_ok())
}

#[test]
fn jwt_5_jwt_7_signatures_agree_with_ring() {
    let cases = [
        ec_case("ES256", EcKey::p256(1)),
        ec_case("ES384", EcKey::p384(2)),
        rsa_case("RS256"),
        rsa_case("PS256"),
    ];
    let mut g = Gen(0xd1ff_5eed_0000_0001);
    for case in &cases {
        let (input, sig_b64) = case.token.rsplit_once('.').unwrap();
        let sig = b64::decode_url(sig_b64).unwrap();
        assert!(
            ours(case, &case.token) && (case.ring)(input.as_bytes(), &sig),
            "{} valid",
            case.alg
        );
        // Another message's valid signature: right form, wrong content.
        let other_claims = BASE_CLAIMS.replace("1747124243", "1747124244");
        let other = match case.alg {
            "ES256" => EcKey::p256(1).sign(&BASE_HEADER.replace("ES256", case.alg), &other_claims),
            "ES384" => EcKey::p384(2).sign(&BASE_HEADER.replace("ES256", case.alg), &other_claims),
            _ => EcKey::p256(9).sign(BASE_HEADER, &other_claims),
        };
        let other_sig = b64::decode_url(other.rsplit_once('.').unwrap().1).unwrap();
        let (mut accepted, mut tried) = (0, 0);
        for _ in 0..1500 {
            let mutated = mutate(&mut g, &sig, &other_sig);
            let token = format!("{input}.{}", b64::encode_url(&mutated));
            let theirs = (case.ring)(input.as_bytes(), &mutated);
            assert_eq!(
                ours(case, &token),
                theirs,
                "{} signature {mutated:02x?}",
                case.alg
            );
            accepted += usize::from(theirs);
            tried += 1;
        }
        assert!(
            accepted < tried / 10,
            "{}: mutations mostly rejected ({accepted}/{tried})",
            case.alg
        );
    }
}

/// The pinned difference that is not one: a high-S ECDSA signature (s → n − s) verifies for
/// both implementations.
#[test]
fn high_s_ecdsa_is_accepted_by_both() {
    let case = ec_case("ES256", EcKey::p256(1));
    let (input, sig_b64) = case.token.rsplit_once('.').unwrap();
    let sig = b64::decode_url(sig_b64).unwrap();
    let parsed = p256::ecdsa::Signature::from_slice(&sig).unwrap();
    let (r, s) = parsed.split_scalars();
    let high = p256::ecdsa::Signature::from_scalars(r, -*s)
        .unwrap()
        .to_bytes()
        .to_vec();
    assert_ne!(high, sig);
    let token = format!("{input}.{}", b64::encode_url(&high));
    assert!((case.ring)(input.as_bytes(), &high));
    assert!(ours(&case, &token));
}
