//! The response side of AS metadata completion (README "AS metadata", META-1): a GET of a
//! configured metadata path is sent without `Accept-Encoding`; a `200` JSON answer has its
//! headers held while its body is read (up to `as_metadata.max_bytes`), then gets the SPIFFE
//! methods from the core's [`as_metadata`] added, or goes on unchanged.

use super::host;
use crate::as_metadata;
use crate::config::Config;
use proxy_wasm::types::{Action, BufferType, MapType};

/// Response headers of a document the filter may complete that would misdescribe it.
const REWRITTEN_RESPONSE_HEADERS: [&str; 6] = [
    "content-length",
    "etag",
    "last-modified",
    "content-md5",
    "digest",
    "content-digest",
];

/// A request's progress through metadata completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetadataResponse {
    /// Not a metadata request (or its response is not completed).
    Off,
    /// A GET of a configured metadata path: its response will be looked at.
    Requested,
    /// Response headers held while the body is read; the body's size so far.
    Holding(usize),
}

impl MetadataResponse {
    /// For the request headers: a GET of a metadata path (never in dry run, where nothing is
    /// enforced and so nothing advertised) asks the AS for an uncompressed answer.
    pub fn for_request(config: &Config, method: &str, path: &str) -> Self {
        if method != "GET" || config.dry_run.is_some() || !config.is_metadata_path(path) {
            return MetadataResponse::Off;
        }
        host::set_request_header("accept-encoding", None);
        MetadataResponse::Requested
    }

    pub fn on_headers(&mut self, end_of_stream: bool) -> Action {
        if *self != MetadataResponse::Requested {
            return Action::Continue;
        }
        let json_200 = host::response_header(":status").as_deref() == Some("200")
            && host::response_header("content-type")
                .is_some_and(|ct| ct.to_ascii_lowercase().contains("json"))
            && host::response_header("content-encoding")
                .is_none_or(|e| e.eq_ignore_ascii_case("identity"));
        if !json_200 || end_of_stream {
            *self = MetadataResponse::Off;
            return Action::Continue;
        }
        // The completed document has another length (the answer goes out chunked) and other
        // bytes: validators and digests of the AS's document no longer describe it.
        let map = MapType::HttpResponseHeaders;
        host::remove_all(map, &REWRITTEN_RESPONSE_HEADERS.map(str::to_owned));
        *self = MetadataResponse::Holding(0);
        Action::Pause
    }

    pub fn on_body(
        &mut self,
        config: Option<&Config>,
        path: &str,
        body_size: usize,
        end_of_stream: bool,
    ) -> Action {
        let MetadataResponse::Holding(_) = *self else {
            return Action::Continue;
        };
        *self = MetadataResponse::Holding(body_size);
        let max = config.map_or(0, |c| c.as_metadata.max_bytes);
        if body_size > max {
            log::warn!(
                "AS metadata at {path} over as_metadata.max_bytes ({max}): passed on unchanged"
            );
            *self = MetadataResponse::Off;
            return Action::Continue;
        }
        if end_of_stream {
            self.complete(config, path);
            return Action::Continue;
        }
        Action::Pause
    }

    /// A body that ends with trailers never reports end_of_stream in the body callback.
    pub fn on_trailers(&mut self, config: Option<&Config>, path: &str) -> Action {
        self.complete(config, path);
        Action::Continue
    }

    /// Adds the SPIFFE methods to the held document, or leaves it as it is.
    fn complete(&mut self, config: Option<&Config>, path: &str) {
        let MetadataResponse::Holding(size) = *self else {
            return;
        };
        *self = MetadataResponse::Off;
        let Some(config) = config else {
            return;
        };
        let Some(document) = host::buffer(BufferType::HttpResponseBody, size) else {
            return;
        };
        match as_metadata::rewrite(&document, &config.as_metadata.auth_methods) {
            // Never longer than max_bytes: a body that outgrew Envoy's buffer limit while the
            // filter replaced it brought the whole Envoy process down in a review.
            Ok(Some(completed)) if completed.len() > config.as_metadata.max_bytes => {
                log::warn!(
                    "AS metadata at {path} passed on unchanged: completed it would be over as_metadata.max_bytes"
                );
            }
            Ok(Some(completed)) => {
                if host::replace_response_body(size, &completed) {
                    log::debug!("AS metadata at {path}: SPIFFE methods added");
                } else {
                    log::warn!("AS metadata at {path}: the body could not be replaced");
                }
            }
            Ok(None) => {}
            Err(e) => log::warn!("AS metadata at {path} passed on unchanged: {e}"),
        }
    }
}
