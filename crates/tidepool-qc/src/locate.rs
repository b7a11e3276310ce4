//! Where the query compiler's `.wasm` is found when the configuration does not say.
//!
//! `tools/fetch-query-compiler.sh` unpacks the pinned npm package into
//! `$TIDEPOOL_CACHE_DIR` (default `$XDG_CACHE_HOME/tidepool` or `~/.cache/tidepool`) under
//! `query-compiler/<version>/postgresql/`.

use std::path::PathBuf;

/// The `@prisma/query-compiler-wasm` version tidepool is built and tested against (same engines
/// commit as the Prisma 7 packages pinned in tests/clients/prisma).
pub const PINNED_VERSION: &str = "7.10.0-4.0edf323efd1d98336f3f0a68684b56f689b900d3";

/// `<cache>/query-compiler/<PINNED_VERSION>/postgresql/query_compiler_fast_bg.wasm`.
pub fn default_wasm_path() -> Option<PathBuf> {
    let cache = std::env::var_os("TIDEPOOL_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("tidepool")))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("tidepool")))?;
    Some(cache.join("query-compiler").join(PINNED_VERSION).join("postgresql").join("query_compiler_fast_bg.wasm"))
}
