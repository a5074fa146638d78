//! Client-supplied text made safe for the log: bounded in length and debug-escaped, so a
//! hostile request can neither flood Envoy's log nor forge log lines.

/// Longest piece of client text quoted in a log line.
const MAX_CHARS: usize = 64;

/// `text` quoted and escaped, cut to 64 characters with a note of the full length.
pub fn quote(text: &str) -> String {
    let chars = text.chars().count();
    if chars <= MAX_CHARS {
        format!("{text:?}")
    } else {
        let head: String = text.chars().take(MAX_CHARS).collect();
        format!("{head:?}… ({chars} characters)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_quoted_and_escaped() {
        assert_eq!(quote("ES256"), "\"ES256\"");
        assert_eq!(quote("a\nb\"c"), "\"a\\nb\\\"c\"");
    }

    #[test]
    fn long_text_is_cut() {
        let long = "a".repeat(50_000);
        let q = quote(&long);
        assert_eq!(q, format!("\"{}\"… (50000 characters)", "a".repeat(64)));
    }
}
