//! The proxy-wasm shell: a root context that fetches bundles on a timer and an HTTP context
//! per request, both thin adapters from host callbacks to the host-agnostic core.

pub mod abi;
pub mod host;
pub mod http;
pub mod root;

#[cfg(target_arch = "wasm32")]
proxy_wasm::main! {{
    host::install_logger(log::LevelFilter::Info);
    proxy_wasm::set_root_context(|context_id| -> Box<dyn proxy_wasm::traits::RootContext> {
        Box::new(root::FilterRoot::new(context_id))
    });
}}
