//! tidepool-qc: runs Prisma's published query compiler (the `@prisma/query-compiler-wasm` build of
//! prisma-engines, pinned in `tools/fetch-query-compiler.sh`) inside tidepool, with no Node.js.
//!
//! The WASM module is a wasm-bindgen build: its ≈37 imports operate on JavaScript values passed as
//! `externref`s. [`js`] keeps those values in a per-instance arena, [`host`] implements the imports
//! over it (their names carry per-build hashes, so [`glue`] maps them by reading the `_bg.js` glue
//! shipped next to the `.wasm`), and [`compiler`] exposes `compile` / `compileBatch` returning the
//! plan as `serde_json::Value`. An instance is single-threaded; callers keep a pool of them.

mod compiler;
mod glue;
mod host;
mod js;
mod locate;
mod pool;

pub use compiler::{CompileError, Compiler, CompilerModule, Limits};
pub use locate::{default_wasm_path, PINNED_VERSION};
pub use pool::{Busy, CompilerPool, Job, JobKind};
