//! X.509 signature algorithms for `rustls-webpki`, implemented with pure-Rust RustCrypto crates
//! (no C, so they build for `wasm32-wasip1`): ECDSA P-256/SHA-256 and P-384/SHA-384, RSA
//! PKCS#1 v1.5 and RSA-PSS with SHA-256/384/512 over 2048–8192-bit keys. These cover what SPIRE
//! and common CAs issue; a chain signed otherwise fails validation (closed).

use rustls_pki_types::{
    alg_id, AlgorithmIdentifier, InvalidSignature, SignatureVerificationAlgorithm,
};

/// Every algorithm the filter accepts in X509-SVID chains.
pub static ALL: &[&dyn SignatureVerificationAlgorithm] = &[
    &EcdsaP256Sha256,
    &EcdsaP384Sha384,
    &Rsa(RsaScheme::Pkcs1Sha256),
    &Rsa(RsaScheme::Pkcs1Sha384),
    &Rsa(RsaScheme::Pkcs1Sha512),
    &Rsa(RsaScheme::PssSha256),
    &Rsa(RsaScheme::PssSha384),
    &Rsa(RsaScheme::PssSha512),
];

/// ECDSA over one curve with its own hash (the curve crate's default digest), DER signatures.
macro_rules! ecdsa_algorithm {
    ($name:ident, $curve:ident, $key_alg:ident, $sig_alg:ident) => {
        #[derive(Debug)]
        struct $name;

        impl SignatureVerificationAlgorithm for $name {
            fn verify_signature(
                &self,
                public_key: &[u8],
                message: &[u8],
                signature: &[u8],
            ) -> Result<(), InvalidSignature> {
                use $curve::ecdsa::signature::Verifier;
                let key = $curve::ecdsa::VerifyingKey::from_sec1_bytes(public_key)
                    .map_err(|_| InvalidSignature)?;
                let sig = $curve::ecdsa::DerSignature::try_from(signature)
                    .map_err(|_| InvalidSignature)?;
                key.verify(message, &sig).map_err(|_| InvalidSignature)
            }
            fn public_key_alg_id(&self) -> AlgorithmIdentifier {
                alg_id::$key_alg
            }
            fn signature_alg_id(&self) -> AlgorithmIdentifier {
                alg_id::$sig_alg
            }
        }
    };
}

ecdsa_algorithm!(EcdsaP256Sha256, p256, ECDSA_P256, ECDSA_SHA256);
ecdsa_algorithm!(EcdsaP384Sha384, p384, ECDSA_P384, ECDSA_SHA384);

#[derive(Debug, Clone, Copy)]
enum RsaScheme {
    Pkcs1Sha256,
    Pkcs1Sha384,
    Pkcs1Sha512,
    PssSha256,
    PssSha384,
    PssSha512,
}

#[derive(Debug)]
struct Rsa(RsaScheme);

/// RSA moduli accepted in chains: at least 2048 bits (RFC 7518's floor, used here too), at
/// most 8192 (bounds the cost of one verification).
const RSA_BITS: std::ops::RangeInclusive<u32> = 2048..=8192;

impl SignatureVerificationAlgorithm for Rsa {
    fn verify_signature(
        &self,
        public_key: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), InvalidSignature> {
        use rsa::pkcs1::DecodeRsaPublicKey;
        use rsa::signature::Verifier;
        use rsa::traits::PublicKeyParts;
        use sha2::{Sha256, Sha384, Sha512};
        let key = rsa::PublicKey::from_pkcs1_der(public_key).map_err(|_| InvalidSignature)?;
        if !RSA_BITS.contains(&key.n().bit_width()) {
            return Err(InvalidSignature);
        }
        use rsa::{pkcs1v15, pss};
        let pkcs1 = pkcs1v15::Signature::try_from(signature).map_err(|_| InvalidSignature)?;
        let pss_sig = pss::Signature::try_from(signature).map_err(|_| InvalidSignature)?;
        let verified = match self.0 {
            RsaScheme::Pkcs1Sha256 => {
                pkcs1v15::VerifyingKey::<Sha256>::new(key).verify(message, &pkcs1)
            }
            RsaScheme::Pkcs1Sha384 => {
                pkcs1v15::VerifyingKey::<Sha384>::new(key).verify(message, &pkcs1)
            }
            RsaScheme::Pkcs1Sha512 => {
                pkcs1v15::VerifyingKey::<Sha512>::new(key).verify(message, &pkcs1)
            }
            RsaScheme::PssSha256 => pss::VerifyingKey::<Sha256>::new(key).verify(message, &pss_sig),
            RsaScheme::PssSha384 => pss::VerifyingKey::<Sha384>::new(key).verify(message, &pss_sig),
            RsaScheme::PssSha512 => pss::VerifyingKey::<Sha512>::new(key).verify(message, &pss_sig),
        };
        verified.map_err(|_| InvalidSignature)
    }
    fn public_key_alg_id(&self) -> AlgorithmIdentifier {
        alg_id::RSA_ENCRYPTION
    }
    fn signature_alg_id(&self) -> AlgorithmIdentifier {
        match self.0 {
            RsaScheme::Pkcs1Sha256 => alg_id::RSA_PKCS1_SHA256,
            RsaScheme::Pkcs1Sha384 => alg_id::RSA_PKCS1_SHA384,
            RsaScheme::Pkcs1Sha512 => alg_id::RSA_PKCS1_SHA512,
            RsaScheme::PssSha256 => alg_id::RSA_PSS_SHA256,
            RsaScheme::PssSha384 => alg_id::RSA_PSS_SHA384,
            RsaScheme::PssSha512 => alg_id::RSA_PSS_SHA512,
        }
    }
}
