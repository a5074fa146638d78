//! AS metadata (RFC 8414, OpenID Connect Discovery) passing through the filter: the SPIFFE client
//! authentication methods this filter enforces at the token endpoint (`spiffe_jwt`,
//! `spiffe_x509`; draft-02 §4, META-1) are added to `token_endpoint_auth_methods_supported`.
//!
//! Only methods that work here are added: the ones the operator lists (`spiffe_x509` needs the
//! mTLS listener). The AS's own entries are kept, including SPIFFE methods it serves itself, and
//! nothing else in the document changes but the order of its members (it is parsed and written
//! again). The revocation and introspection lists are left alone: the filter authenticates token
//! requests only. A document that is not a strict JSON object, or whose list is not an array of
//! strings, is passed on unchanged.

use crate::strict_json;
use serde_json::Value;
use std::fmt;

/// The methods this filter can enforce, as draft-02 §4 names them.
pub const METHODS: [&str; 2] = ["spiffe_jwt", "spiffe_x509"];

const FIELD: &str = "token_endpoint_auth_methods_supported";

/// RFC 8414 §2: the default when the AS lists no methods.
const DEFAULT_METHOD: &str = "client_secret_basic";

/// Why a document was left as it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetadataError {
    NotJsonObject(String),
    MethodsNotStrings,
}

impl fmt::Display for MetadataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetadataError::NotJsonObject(e) => write!(f, "not a JSON object: {e}"),
            MetadataError::MethodsNotStrings => write!(f, "{FIELD} is not an array of strings"),
        }
    }
}

/// The document with `methods` added to its token endpoint authentication methods, or `None`
/// when they are all listed already (the document is then passed on byte for byte).
pub fn rewrite(document: &[u8], methods: &[String]) -> Result<Option<Vec<u8>>, MetadataError> {
    let mut value = strict_json::parse_value(document)
        .map_err(|e| MetadataError::NotJsonObject(e.to_string()))?;
    let Value::Object(members) = &mut value else {
        return Err(MetadataError::NotJsonObject("not an object".into()));
    };
    let had = members.contains_key(FIELD);
    let listed = members
        .entry(FIELD)
        .or_insert_with(|| Value::Array(vec![Value::from(DEFAULT_METHOD)]));
    let Value::Array(listed) = listed else {
        return Err(MetadataError::MethodsNotStrings);
    };
    if !listed.iter().all(Value::is_string) {
        return Err(MetadataError::MethodsNotStrings);
    }
    let before = listed.len();
    for method in methods {
        if !listed.iter().any(|m| m.as_str() == Some(method)) {
            listed.push(Value::from(method.as_str()));
        }
    }
    if had && listed.len() == before {
        return Ok(None);
    }
    serde_json::to_vec(&value)
        .map(Some)
        .map_err(|e| MetadataError::NotJsonObject(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn methods(list: &[&str]) -> Vec<String> {
        list.iter().map(|m| (*m).to_owned()).collect()
    }

    fn listed(document: &[u8]) -> Vec<String> {
        let v: Value = serde_json::from_slice(document).unwrap();
        v[FIELD]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m.as_str().unwrap().to_owned())
            .collect()
    }

    /// META-1: the enforced methods are added after the AS's own, nothing else changes.
    #[test]
    fn meta_1_methods_added_to_the_list() {
        let doc =
            br#"{"issuer":"https://as.example.com","token_endpoint":"https://as.example.com/token",
            "token_endpoint_auth_methods_supported":["client_secret_basic","private_key_jwt"],
            "revocation_endpoint_auth_methods_supported":["client_secret_basic"]}"#;
        let out = rewrite(doc, &methods(&METHODS)).unwrap().unwrap();
        assert_eq!(
            listed(&out),
            [
                "client_secret_basic",
                "private_key_jwt",
                "spiffe_jwt",
                "spiffe_x509"
            ]
        );
        let (a, b): (Value, Value) = (
            serde_json::from_slice(doc).unwrap(),
            serde_json::from_slice(&out).unwrap(),
        );
        for key in [
            "issuer",
            "token_endpoint",
            "revocation_endpoint_auth_methods_supported",
        ] {
            assert_eq!(a[key], b[key], "{key}");
        }
    }

    /// META-1: only the configured methods (`spiffe_x509` only with the mTLS listener); a method
    /// the AS lists already is not repeated, and a complete list leaves the document untouched.
    #[test]
    fn meta_1_only_configured_methods_once() {
        let doc = br#"{"token_endpoint_auth_methods_supported":["spiffe_jwt","tls_client_auth"]}"#;
        assert_eq!(rewrite(doc, &methods(&["spiffe_jwt"])), Ok(None));
        let out = rewrite(doc, &methods(&["spiffe_jwt", "spiffe_x509"]))
            .unwrap()
            .unwrap();
        assert_eq!(
            listed(&out),
            ["spiffe_jwt", "tls_client_auth", "spiffe_x509"]
        );
    }

    /// RFC 8414 §2: no list means client_secret_basic, which stays listed beside ours.
    #[test]
    fn absent_list_is_the_rfc_8414_default() {
        let out = rewrite(br#"{"issuer":"x"}"#, &methods(&["spiffe_jwt"]))
            .unwrap()
            .unwrap();
        assert_eq!(listed(&out), ["client_secret_basic", "spiffe_jwt"]);
    }

    #[test]
    fn documents_left_alone() {
        let m = methods(&["spiffe_jwt"]);
        for doc in [&b"[1]"[..], b"not json", br#"{"a":1,"a":2}"#] {
            assert!(matches!(
                rewrite(doc, &m),
                Err(MetadataError::NotJsonObject(_))
            ));
        }
        for doc in [
            &br#"{"token_endpoint_auth_methods_supported":"spiffe_jwt"}"#[..],
            br#"{"token_endpoint_auth_methods_supported":["a",1]}"#,
        ] {
            assert_eq!(rewrite(doc, &m), Err(MetadataError::MethodsNotStrings));
        }
    }
}
