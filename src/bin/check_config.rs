//! `check-config`: validates a plugin configuration outside Envoy with the filter's own parser,
//! so an operator can check one before deploying it. `./build.sh check-config FILE` runs it
//! (and first extracts the plugin configuration from a `WasmPlugin` or `EnvoyFilter` YAML).
//!
//! Reads the JSON configuration from the file named by the one argument (`-`: standard input);
//! prints a summary and exits 0 when the filter would accept it, or prints every problem with
//! its field path, one line each, and exits 1 (a document that is not JSON, or a member of the
//! wrong type or unknown, stops at that first problem). Exit 2: usage or an unreadable file.

use spiffe_oauth_filter::config::Config;
use std::io::Read;
use std::process::ExitCode;

fn read(path: &str) -> std::io::Result<Vec<u8>> {
    if path == "-" {
        let mut bytes = Vec::new();
        std::io::stdin().read_to_end(&mut bytes)?;
        Ok(bytes)
    } else {
        std::fs::read(path)
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [path] = args.as_slice() else {
        eprintln!("usage: check-config FILE   (a plugin configuration in JSON; - for stdin)");
        return ExitCode::from(2);
    };
    let bytes = match read(path) {
        Ok(bytes) => bytes,
        Err(e) => {
            eprintln!("check-config: cannot read {path}: {e}");
            return ExitCode::from(2);
        }
    };
    match Config::check(&bytes) {
        Ok(config) => {
            println!(
                "{path}: accepted: issuer {}, token paths {:?}, trust domains {:?}, {} client(s), {} client prefix(es){}",
                config.issuer,
                config.token_paths,
                config
                    .trust_domains
                    .keys()
                    .map(|td| td.as_str())
                    .collect::<Vec<_>>(),
                config.clients.len(),
                config.client_prefixes.len(),
                if config.dry_run.is_some() { ", dry run" } else { "" }
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in errors {
                println!("{path}: refused: {e}");
            }
            ExitCode::from(1)
        }
    }
}
