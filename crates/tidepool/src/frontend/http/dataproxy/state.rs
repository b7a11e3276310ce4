//! Process-wide state of the DataProxy front end: uploaded schemas (LRU, scoped to the API key's
//! database), the compiler threads (started on first use from `[dataproxy]`), and the plan cache.

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tidepool_qc::{CompileError, CompilerModule, CompilerPool, Job, JobKind, Limits};

use crate::config::DataProxyConfig;

/// Why a compile produced no plan.
#[derive(Debug)]
pub enum CompileFailure {
    /// The compiler is not available (no `.wasm`, load failure): the message says why.
    Unavailable(String),
    /// All compiler threads are busy and the queue is full.
    Busy,
    Compile(CompileError),
}

struct Ready {
    pool: CompilerPool,
    plans: moka::future::Cache<[u8; 32], Arc<Value>>,
}

#[derive(Default)]
pub struct DataProxy {
    /// (database, schema hash, schema text); most recently used last.
    schemas: Mutex<VecDeque<(String, String, Arc<str>)>>,
    ready: OnceLock<Result<Ready, String>>,
}

impl DataProxy {
    fn ready(&self, cfg: &DataProxyConfig) -> Result<&Ready, String> {
        let r = self.ready.get_or_init(|| {
            let path = cfg
                .query_compiler_wasm
                .clone()
                .or_else(tidepool_qc::default_wasm_path)
                .ok_or_else(|| "no query compiler configured ([dataproxy] query_compiler_wasm)".to_owned())?;
            let limits = Limits { max_memory_bytes: cfg.max_compiler_memory, ..Limits::default() };
            let module = CompilerModule::load(&path, limits).map_err(|e| {
                tracing::error!(error = %e, path = %path.display(), "the Prisma 5/6 query compiler is unavailable (run tools/fetch-query-compiler.sh)");
                e.to_string()
            })?;
            tracing::info!(path = %path.display(), sha256 = module.sha256(), "Prisma query compiler loaded");
            let per_thread = cfg.max_schemas.clamp(1, 8);
            let pool = CompilerPool::start(module, cfg.compile_threads, per_thread).map_err(|e| e.to_string())?;
            Ok(Ready { pool, plans: moka::future::Cache::new(cfg.plan_cache_entries) })
        });
        r.as_ref().map_err(Clone::clone)
    }

    pub fn schema(&self, db: &str, hash: &str) -> Option<Arc<str>> {
        let mut s = self.schemas.lock();
        let i = s.iter().position(|(d, h, _)| d == db && h == hash)?;
        let e = s.remove(i)?;
        let text = e.2.clone();
        s.push_back(e);
        Some(text)
    }

    pub fn insert_schema(&self, cfg: &DataProxyConfig, db: &str, hash: &str, text: Arc<str>) {
        let mut s = self.schemas.lock();
        s.retain(|(d, h, _)| !(d == db && h == hash));
        while s.len() >= cfg.max_schemas {
            s.pop_front();
        }
        s.push_back((db.to_owned(), hash.to_owned(), text));
    }

    /// Runs one job on a compiler thread; plans (not loads) are cached by schema and request.
    pub async fn compile(
        &self,
        cfg: &DataProxyConfig,
        db: &str,
        hash: &str,
        schema: Arc<str>,
        kind: JobKind,
        request: &[u8],
    ) -> Result<Arc<Value>, CompileFailure> {
        let ready = self.ready(cfg).map_err(CompileFailure::Unavailable)?;
        let cache_key: [u8; 32] = {
            let mut h = Sha256::new();
            for part in [db.as_bytes(), b"\0", hash.as_bytes(), b"\0", format!("{kind:?}").as_bytes(), b"\0", request] {
                h.update(part);
            }
            h.finalize().into()
        };
        if kind != JobKind::Load {
            if let Some(plan) = ready.plans.get(&cache_key).await {
                return Ok(plan);
            }
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job = Job {
            schema_key: format!("{db}\0{hash}"),
            schema,
            kind,
            request: String::from_utf8_lossy(request).into_owned(),
            reply: Box::new(move |r| {
                let _ = tx.send(r);
            }),
        };
        ready.pool.submit(job).map_err(|_| CompileFailure::Busy)?;
        let plan = match rx.await {
            Ok(Ok(v)) => Arc::new(v),
            Ok(Err(e)) => return Err(CompileFailure::Compile(e)),
            Err(_) => return Err(CompileFailure::Unavailable("the compiler thread stopped".into())),
        };
        if kind != JobKind::Load {
            ready.plans.insert(cache_key, plan.clone()).await;
        }
        Ok(plan)
    }
}
