//! Benchmark-only root context (cargo feature `noop-bench`, never in the shipped filter): an
//! HTTP filter that does nothing but return from its callbacks, built from the same SDK and
//! settings. `./build.sh bench` measures it as the floor a wasm filter costs in Envoy, against
//! which the "repeated JWT-SVID" target is set.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;

pub struct NoopRoot;

impl Context for NoopRoot {}

impl RootContext for NoopRoot {
    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(NoopHttp))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct NoopHttp;

impl Context for NoopHttp {}

impl HttpContext for NoopHttp {}
