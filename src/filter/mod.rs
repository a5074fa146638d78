//! The proxy-wasm shell: a root context that fetches bundles on a timer and an HTTP context
//! per request, both thin adapters from host callbacks to the host-agnostic core.

pub mod abi;
#[cfg(feature = "crypto-bench")]
pub mod crypto_bench;
pub mod host;
pub mod http;
pub mod metadata;
#[cfg(feature = "noop-bench")]
pub mod noop_bench;
pub mod root;

#[cfg(all(
    target_arch = "wasm32",
    not(any(feature = "crypto-bench", feature = "noop-bench"))
))]
proxy_wasm::main! {{
    host::install_logger(log::LevelFilter::Info);
    proxy_wasm::set_root_context(|context_id| -> Box<dyn proxy_wasm::traits::RootContext> {
        Box::new(root::FilterRoot::new(context_id))
    });
}}

// The benchmark build (`--features crypto-bench`): only the timing root context.
#[cfg(all(target_arch = "wasm32", feature = "crypto-bench"))]
proxy_wasm::main! {{
    host::install_logger(log::LevelFilter::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn proxy_wasm::traits::RootContext> {
        Box::new(crypto_bench::CryptoBenchRoot)
    });
}}

// The benchmark's floor (`--features noop-bench`): an HTTP filter that does nothing.
#[cfg(all(target_arch = "wasm32", feature = "noop-bench"))]
proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| -> Box<dyn proxy_wasm::traits::RootContext> {
        Box::<noop_bench::NoopRoot>::default()
    });
}}
