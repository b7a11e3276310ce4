//! tidepool-qc: runs Prisma's published query compiler (the `@prisma/query-compiler-wasm` build of
//! prisma-engines, pinned in `tools/fetch-query-compiler.sh`) inside tidepool, with no Node.js.
//!
//! The WASM module is a wasm-bindgen build: its ≈37 imports operate on JavaScript values passed as
//! `externref`s. [`js`] keeps those values in a per-instance arena, [`host`] implements the imports
//! over it (their names carry per-build hashes, so [`glue`] maps them by reading the `_bg.js` glue
//! shipped next to the `.wasm`), and [`compiler`] exposes `compile` / `compileBatch` returning the
//! plan as `serde_json::Value`. An instance is single-threaded; callers keep a pool of them.
//!
//! Plans are shared by query *shape*: [`dmmf`] runs Prisma's schema tooling (a second pinned
//! `.wasm`) to get the schema's DMMF, [`graph`] derives which argument positions take placeholders,
//! and [`param`] rewrites a request's literals into `{"$type":"Param"}` placeholders (keeping key
//! order, [`ordered`]) plus the values to bind, as Prisma 7's client does before compiling.

mod compiler;
mod dmmf;
mod glue;
mod graph;
mod host;
mod js;
mod locate;
mod ordered;
mod param;
mod pool;

pub use compiler::{CompileError, Compiler, CompilerModule, Limits};
pub use dmmf::{default_schema_wasm_path, strip_datasource_urls, DmmfModule};
pub use graph::ParamGraph;
pub use locate::{default_wasm_path, PINNED_VERSION};
pub use ordered::J;
pub use param::{parameterize, Parameterized, MAX_DEPTH};
pub use pool::{Busy, CompilerPool, Job, JobKind};
