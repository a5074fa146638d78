//! Strict JSON parsing: a `serde_json::Value` tree that refuses duplicate object member names.
//!
//! RFC 7515 §4, RFC 7517 §4 and RFC 7519 §4 let a parser either reject duplicate member names or
//! always take the last one; we reject them everywhere (JWT headers and claims, bundles, the
//! plugin configuration), so two components can never read two different values from one
//! document. Nesting depth is bounded by `serde_json`'s recursion limit (128), so a deeply nested
//! input is an error, not a stack overflow.

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;

/// Why a document was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JsonError {
    /// Not valid JSON (or not UTF-8, or nested too deeply).
    Syntax(String),
    /// An object repeats a member name.
    DuplicateMember(String),
    /// The top level is not an object.
    NotAnObject,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JsonError::Syntax(e) => write!(f, "invalid JSON: {e}"),
            JsonError::DuplicateMember(name) => {
                write!(f, "duplicate member name {}", crate::log_text::quote(name))
            }
            JsonError::NotAnObject => write!(f, "top level is not a JSON object"),
        }
    }
}

const DUPLICATE_MARKER: &str = "\u{0}duplicate member:";

/// A `Value` built by a visitor that fails on the first repeated member name.
struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictValue(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut members = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let StrictValue(value) = map.next_value()?;
            if members.contains_key(&key) {
                return Err(serde::de::Error::custom(format!("{DUPLICATE_MARKER}{key}")));
            }
            members.insert(key, value);
        }
        Ok(Value::Object(members))
    }
}

/// Parses any JSON value, refusing duplicate member names at every depth.
pub fn parse_value(bytes: &[u8]) -> Result<Value, JsonError> {
    match serde_json::from_slice::<StrictValue>(bytes) {
        Ok(StrictValue(v)) => Ok(v),
        Err(e) => {
            let msg = e.to_string();
            match msg.find(DUPLICATE_MARKER) {
                Some(at) => {
                    let rest = msg.get(at + DUPLICATE_MARKER.len()..).unwrap_or_default();
                    // serde_json appends " at line X column Y"; keep only the name.
                    let name = rest.rsplit_once(" at line ").map_or(rest, |(n, _)| n);
                    Err(JsonError::DuplicateMember(name.to_owned()))
                }
                None => Err(JsonError::Syntax(msg)),
            }
        }
    }
}

/// Parses a JSON document whose top level must be an object.
pub fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, JsonError> {
    match parse_value(bytes)? {
        Value::Object(map) => Ok(map),
        _ => Err(JsonError::NotAnObject),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_objects() {
        let m = parse_object(br#"{"a":1,"b":[{"c":"d"}],"e":null}"#).unwrap();
        assert_eq!(m["a"], 1);
        assert_eq!(m["b"][0]["c"], "d");
    }

    #[test]
    fn jwt_3_rejects_duplicate_top_level_members() {
        let e = parse_object(br#"{"sub":"a","sub":"b"}"#).unwrap_err();
        assert_eq!(e, JsonError::DuplicateMember("sub".into()));
    }

    #[test]
    fn bun_19_rejects_duplicates_at_depth() {
        let e = parse_object(br#"{"keys":[{"kid":"a","kid":"b"}]}"#).unwrap_err();
        assert_eq!(e, JsonError::DuplicateMember("kid".into()));
    }

    #[test]
    fn duplicate_detection_sees_escaped_names() {
        // "s\u0075b" is "sub" after unescaping.
        let e = parse_object(br#"{"sub":"a","s\u0075b":"b"}"#).unwrap_err();
        assert_eq!(e, JsonError::DuplicateMember("sub".into()));
    }

    #[test]
    fn rejects_non_objects_and_garbage() {
        assert_eq!(parse_object(b"[1]").unwrap_err(), JsonError::NotAnObject);
        assert!(matches!(
            parse_object(b"<html>").unwrap_err(),
            JsonError::Syntax(_)
        ));
        assert!(matches!(
            parse_object(b"").unwrap_err(),
            JsonError::Syntax(_)
        ));
        assert!(matches!(
            parse_object(b"{\"a\":1} x").unwrap_err(),
            JsonError::Syntax(_)
        ));
        assert!(matches!(
            parse_object(b"{\"a\":\"\xff\"}").unwrap_err(),
            JsonError::Syntax(_)
        ));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let mut doc = String::from("{\"x\":");
        doc.push_str(&"[".repeat(10_000));
        doc.push_str(&"]".repeat(10_000));
        doc.push('}');
        assert!(matches!(
            parse_object(doc.as_bytes()).unwrap_err(),
            JsonError::Syntax(_)
        ));
    }

    #[test]
    fn large_unsigned_integers_survive() {
        let m = parse_object(br#"{"n":18446744073709551615}"#).unwrap();
        assert_eq!(m["n"].as_u64(), Some(u64::MAX));
    }
}
