//! The `[dataproxy]` section: the Prisma 5/6 DataProxy front end (schema uploads, the in-process
//! query compiler that turns their JSON-protocol requests into plans).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataProxyConfig {
    /// `query_compiler_fast_bg.wasm` of the pinned `@prisma/query-compiler-wasm` (its `_bg.js`
    /// glue must sit next to it). Unset: the cache directory `tools/fetch-query-compiler.sh` fills.
    pub query_compiler_wasm: Option<PathBuf>,
    /// `prisma_schema_build_bg.wasm` of the pinned `@prisma/prisma-schema-wasm` (its
    /// `prisma_schema_build.js` glue next to it): its DMMF says which request values become plan
    /// parameters. Unset: the cache directory `tools/fetch-query-compiler.sh` fills. Missing: plans
    /// are cached by exact request instead of by shape (logged once).
    pub schema_wasm: Option<PathBuf>,
    /// Cache plans by query shape (literal values replaced by parameters, as Prisma 7's client
    /// does), so a query compiles once however its values change. Off: by exact request body.
    pub plan_by_shape: bool,
    /// Largest schema upload (the base64 body of `PUT …/schema`).
    pub max_schema_size: usize,
    /// Uploaded schemas kept (least recently used dropped first; clients re-upload on demand).
    pub max_schemas: usize,
    /// Threads that run the query compiler (each keeps one compiler per recently used schema).
    pub compile_threads: usize,
    /// Linear-memory cap of one compiler instance, bytes.
    pub max_compiler_memory: usize,
    /// Compiled plans kept, keyed by schema and request.
    pub plan_cache_entries: u64,
    /// Bytes of plan JSON the plan cache may hold (a plan of a large request is large): the cache
    /// keeps at most `plan_cache_entries` plans and at most this many bytes of them.
    pub plan_cache_bytes: u64,
}

impl Default for DataProxyConfig {
    fn default() -> Self {
        DataProxyConfig {
            query_compiler_wasm: None,
            schema_wasm: None,
            plan_by_shape: true,
            max_schema_size: 1 << 20,
            max_schemas: 32,
            compile_threads: 2,
            max_compiler_memory: 256 << 20,
            plan_cache_entries: 10_000,
            plan_cache_bytes: 64 << 20,
        }
    }
}

impl DataProxyConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !(1024..=(64 << 20)).contains(&self.max_schema_size) {
            return Err("[dataproxy] max_schema_size must be within 1 KiB..64 MiB".into());
        }
        if self.max_schemas == 0 || self.compile_threads == 0 || self.compile_threads > 64 {
            return Err("[dataproxy] max_schemas must be positive and compile_threads within 1..64".into());
        }
        if self.plan_cache_entries == 0 || self.plan_cache_bytes < (1 << 20) {
            return Err("[dataproxy] plan_cache_entries must be positive and plan_cache_bytes at least 1 MiB".into());
        }
        if self.max_compiler_memory < (32 << 20) {
            return Err("[dataproxy] max_compiler_memory must be at least 32 MiB".into());
        }
        Ok(())
    }
}
