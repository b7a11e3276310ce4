//! Process-wide state of the DataProxy front end: uploaded schemas (LRU, scoped to the API key's
//! database) with their parameterization graphs, the compiler threads (started on first use from
//! `[dataproxy]`), and the plan cache (keyed by the parameterized request, i.e. by query shape).

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use sha2::{Digest, Sha256};
use tidepool_qc::{CompileError, CompilerModule, CompilerPool, DmmfModule, Job, JobKind, Limits, ParamGraph, J};

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

/// A compiled plan (key order as the compiler built it: it orders result fields) and its JSON
/// text (spliced into the interpreter's request as is).
pub struct Compiled {
    pub tree: J,
    pub text: String,
}

struct Ready {
    pool: CompilerPool,
    plans: moka::future::Cache<[u8; 32], Arc<Compiled>>,
    /// Prisma's schema tooling; `None` when unavailable (plans then cached by exact request).
    dmmf: Option<Arc<DmmfModule>>,
    /// One DMMF build at a time (uploads are rare; each takes a core for a moment).
    dmmf_gate: tokio::sync::Semaphore,
}

/// An uploaded schema: its text and, when built, the graph that parameterizes its requests.
#[derive(Clone)]
pub struct Schema {
    pub text: Arc<str>,
    pub graph: Option<Arc<ParamGraph>>,
}

#[derive(Default)]
pub struct DataProxy {
    /// (database, schema hash, schema); most recently used last.
    schemas: Mutex<VecDeque<(String, String, Schema)>>,
    ready: OnceLock<Result<Ready, String>>,
    /// Plans taken from the cache / compiled (`tidepool_dataproxy_plans_total`).
    plans_cached: Counter,
    plans_compiled: Counter,
}

impl DataProxy {
    /// (plans taken from the cache, plans compiled) since start.
    pub fn plan_counts(&self) -> (u64, u64) {
        (self.plans_cached.get(), self.plans_compiled.get())
    }

    pub fn register(&self, registry: &mut Registry) {
        registry.register("dataproxy_plans_cached", "Prisma 5/6 requests whose plan came from the plan cache", self.plans_cached.clone());
        registry.register("dataproxy_plans_compiled", "Prisma 5/6 requests (and batches) compiled by the query compiler", self.plans_compiled.clone());
    }

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
            let dmmf = if cfg.plan_by_shape { load_dmmf(cfg, limits) } else { None };
            // Weighed in bytes, each plan at least bytes/entries: both limits hold.
            let floor = (cfg.plan_cache_bytes / cfg.plan_cache_entries.max(1)).max(1);
            let plans = moka::future::Cache::builder()
                .max_capacity(cfg.plan_cache_bytes)
                .weigher(move |_k: &[u8; 32], v: &Arc<Compiled>| u32::try_from((v.text.len() as u64).max(floor)).unwrap_or(u32::MAX))
                .build();
            Ok(Ready { pool, plans, dmmf, dmmf_gate: tokio::sync::Semaphore::new(1) })
        });
        r.as_ref().map_err(Clone::clone)
    }

    pub fn schema(&self, db: &str, hash: &str) -> Option<Schema> {
        let mut s = self.schemas.lock();
        let i = s.iter().position(|(d, h, _)| d == db && h == hash)?;
        let e = s.remove(i)?;
        let schema = e.2.clone();
        s.push_back(e);
        Some(schema)
    }

    /// The parameterization graph of `text`, built from its DMMF on a blocking thread; `None`
    /// when shape caching is off or unavailable, or the schema tooling refused the schema.
    pub async fn graph(&self, cfg: &DataProxyConfig, text: Arc<str>) -> Option<Arc<ParamGraph>> {
        let ready = self.ready(cfg).ok()?;
        let module = ready.dmmf.clone()?;
        let _permit = ready.dmmf_gate.acquire().await.ok()?;
        let started = std::time::Instant::now();
        let built = tokio::task::spawn_blocking(move || module.dmmf(&text).map_err(|e| e.to_string()).and_then(|d| ParamGraph::from_dmmf(&d))).await;
        match built {
            Ok(Ok(g)) => {
                tracing::debug!(ms = started.elapsed().as_millis() as u64, "schema parameterization graph built");
                Some(Arc::new(g))
            }
            Ok(Err(e)) => {
                tracing::info!(error = %e, "no parameterization graph for this schema: its plans are cached by exact request");
                None
            }
            Err(_) => None,
        }
    }

    pub fn insert_schema(&self, cfg: &DataProxyConfig, db: &str, hash: &str, schema: Schema) {
        let mut s = self.schemas.lock();
        s.retain(|(d, h, _)| !(d == db && h == hash));
        while s.len() >= cfg.max_schemas {
            s.pop_front();
        }
        s.push_back((db.to_owned(), hash.to_owned(), schema));
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
    ) -> Result<Arc<Compiled>, CompileFailure> {
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
                self.plans_cached.inc();
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
            Ok(Ok(v)) => Arc::new(Compiled { text: v.to_json_string(), tree: v }),
            Ok(Err(e)) => return Err(CompileFailure::Compile(e)),
            Err(_) => return Err(CompileFailure::Unavailable("the compiler thread stopped".into())),
        };
        if kind != JobKind::Load {
            self.plans_compiled.inc();
            ready.plans.insert(cache_key, plan.clone()).await;
        }
        Ok(plan)
    }
}

fn load_dmmf(cfg: &DataProxyConfig, limits: Limits) -> Option<Arc<DmmfModule>> {
    let path = cfg.schema_wasm.clone().or_else(tidepool_qc::default_schema_wasm_path)?;
    match DmmfModule::load(&path, limits) {
        Ok(m) => Some(Arc::new(m)),
        Err(e) => {
            tracing::warn!(error = %e, path = %path.display(), "Prisma schema tooling unavailable: Prisma 5/6 plans are cached by exact request, not by shape (run tools/fetch-query-compiler.sh)");
            None
        }
    }
}
