//! Strict base64 decoders for JOSE: unpadded base64url (RFC 7515 §2) and standard base64 for
//! `x5c` (RFC 7517 §4.7).
//!
//! Both refuse characters outside their alphabet, whitespace, wrong padding and non-zero
//! trailing bits, so one byte string has exactly one accepted encoding (JWT-2; field case FC-28).

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;

const URL_SAFE_STRICT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(false),
);

const STANDARD_STRICT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(true)
        .with_decode_padding_mode(DecodePaddingMode::RequireCanonical)
        .with_decode_allow_trailing_bits(false),
);

/// Decodes unpadded base64url (JWS segments, JWK members).
pub fn decode_url(s: &str) -> Option<Vec<u8>> {
    URL_SAFE_STRICT.decode(s).ok()
}

/// Encodes unpadded base64url.
pub fn encode_url(bytes: &[u8]) -> String {
    URL_SAFE_STRICT.encode(bytes)
}

/// Encodes padded standard base64 (RFC 9440 byte sequences).
pub fn encode_std(bytes: &[u8]) -> String {
    STANDARD_STRICT.encode(bytes)
}

/// Decodes padded standard base64 (`x5c` certificates).
pub fn decode_std(s: &str) -> Option<Vec<u8>> {
    STANDARD_STRICT.decode(s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwt_2_url_round_trip_and_strictness() {
        assert_eq!(decode_url("aGk").unwrap(), b"hi");
        assert_eq!(encode_url(b"hi"), "aGk");
        assert_eq!(decode_url(""), Some(vec![]));
        assert!(decode_url("aGk=").is_none(), "padding");
        assert!(decode_url("aG k").is_none(), "space");
        assert!(decode_url("aGk\n").is_none(), "newline");
        assert!(decode_url("a+/k").is_none(), "standard alphabet");
        assert!(decode_url("aGl").is_none(), "non-zero trailing bits");
        assert!(decode_url("aGk!!!!").is_none(), "junk");
        assert!(decode_url("a").is_none(), "impossible length");
    }

    #[test]
    fn bun_10_x5c_is_standard_base64() {
        assert_eq!(decode_std("aGk=").unwrap(), b"hi");
        assert!(decode_std("aGk").is_none(), "padding required");
        assert_eq!(decode_std("+/8=").unwrap(), vec![0xfb, 0xff]);
        assert!(decode_std("-_8=").is_none(), "url alphabet");
    }
}
