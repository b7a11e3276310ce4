//! A loaded query-compiler module ([`CompilerModule`], shared, `Send + Sync`) and one compiler
//! instance built from a schema ([`Compiler`], single-threaded; callers pool them).

use crate::glue::{self, Import};
use crate::host::{self, HostState};
use crate::ordered::J;
use serde_json::{json, Value};
use std::sync::Arc;
use wasmi::{Config, Engine, Extern, Instance, Linker, Module, Store, StoreLimitsBuilder, TypedFunc};

/// Resource bounds for one instance.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Linear memory cap for one instance, bytes.
    pub max_memory_bytes: usize,
    /// Fuel (≈ WASM instructions) one compile may burn before it is cut off.
    pub fuel_per_compile: u64,
    /// Fuel for building an instance from a schema.
    pub fuel_per_schema: u64,
    /// JS values alive in one call.
    pub max_values: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_memory_bytes: 256 << 20, fuel_per_compile: 2_000_000_000, fuel_per_schema: 20_000_000_000, max_values: 4_000_000 }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// The compiler rejected the request or schema (Prisma's own `{message, code, meta}`).
    #[error("{message}")]
    Rejected { message: String, code: Option<String>, meta: Option<Value> },
    /// The WASM trapped, panicked or ran out of fuel/memory; the instance must be discarded.
    #[error("query compiler failed: {0}")]
    Trap(String),
    /// The module could not be loaded or linked.
    #[error("query compiler could not be loaded: {0}")]
    Load(String),
}

impl CompileError {
    /// The `{message, code?, meta?}` body Prisma's compiler throws, for the error replies.
    pub fn to_json(&self) -> Value {
        match self {
            CompileError::Rejected { message, code, meta } => {
                json!({ "message": message, "code": code, "meta": meta })
            }
            other => json!({ "message": other.to_string() }),
        }
    }
}

/// The pinned `.wasm`, parsed once and shared by every instance.
pub struct CompilerModule {
    engine: Engine,
    module: Module,
    linker: Linker<HostState>,
    limits: Limits,
    sha256: String,
}

impl std::fmt::Debug for CompilerModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompilerModule").field("sha256", &self.sha256).finish()
    }
}

impl CompilerModule {
    /// Loads `<dir>/query_compiler_*_bg.wasm` and its `_bg.js` glue.
    pub fn load(wasm_path: &std::path::Path, limits: Limits) -> Result<Arc<Self>, CompileError> {
        let wasm = std::fs::read(wasm_path).map_err(|e| CompileError::Load(format!("{}: {e}", wasm_path.display())))?;
        let glue_path = wasm_path.with_extension("js");
        let glue = std::fs::read_to_string(&glue_path).map_err(|e| CompileError::Load(format!("{}: {e}", glue_path.display())))?;
        Self::from_parts(&wasm, &glue, limits).map(Arc::new)
    }

    pub fn from_parts(wasm: &[u8], glue_js: &str, limits: Limits) -> Result<Self, CompileError> {
        let mut config = Config::default();
        config.consume_fuel(true);
        let engine = Engine::new(&config);
        let module = Module::new(&engine, wasm).map_err(|e| CompileError::Load(e.to_string()))?;
        let kinds = glue::classify(glue_js);
        let mut linker = Linker::new(&engine);
        for import in module.imports() {
            let kind: Import = *kinds
                .get(import.name())
                .ok_or_else(|| CompileError::Load(format!("import `{}` is not one this host implements (is the .wasm the pinned build?)", import.name())))?;
            host::define(&mut linker, import.module(), import.name(), kind).map_err(|e| CompileError::Load(e.to_string()))?;
        }
        let sha256 = {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(wasm))
        };
        Ok(Self { engine, module, linker, limits, sha256 })
    }

    /// sha256 of the loaded `.wasm`, for logs.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// Builds a compiler for `datamodel` (Prisma schema text) targeting Postgres.
    pub fn instantiate(self: &Arc<Self>, datamodel: &str, relation_joins: bool) -> Result<Compiler, CompileError> {
        let limits = StoreLimitsBuilder::new().memory_size(self.limits.max_memory_bytes).trap_on_grow_failure(true).build();
        let mut store = Store::new(&self.engine, HostState::new(limits, self.limits.max_values));
        store.limiter(|s| &mut s.limits);
        store.set_fuel(self.limits.fuel_per_schema).map_err(|e| CompileError::Load(e.to_string()))?;
        let instance = self.linker.instantiate_and_start(&mut store, &self.module).map_err(|e| CompileError::Load(e.to_string()))?;
        let memory = instance.get_memory(&store, "memory").ok_or_else(|| CompileError::Load("no memory export".into()))?;
        let malloc = typed::<(i32, i32), i32>(&instance, &store, "__wbindgen_malloc")?;
        store.data_mut().memory = Some(memory);
        store.data_mut().malloc = Some(malloc);
        store.data_mut().table = instance.get_table(&store, "__wbindgen_externrefs");
        let start = typed::<(), ()>(&instance, &store, "__wbindgen_start")?;
        start.call(&mut store, ()).map_err(|e| trap(&store, e))?;

        let mut c = Compiler {
            compile: typed(&instance, &store, "querycompiler_compile")?,
            compile_batch: typed(&instance, &store, "querycompiler_compileBatch")?,
            dealloc: typed(&instance, &store, "__externref_table_dealloc")?,
            instance,
            store,
            ptr: 0,
            poisoned: false,
            fuel_per_compile: self.limits.fuel_per_compile,
            module: Arc::clone(self),
        };
        let params = json!({
            "datamodel": datamodel,
            "provider": "postgres",
            "connectionInfo": { "supportsRelationJoins": relation_joins },
        });
        let new = typed::<wasmi::Nullable<wasmi::ExternRef>, (i32, i32, i32)>(&c.instance, &c.store, "querycompiler_new")?;
        let slot = c.store.data_mut().arena.alloc_json(&params).map_err(|e| CompileError::Load(e.into()))?;
        let arg = host::ref_of(&mut c.store, slot);
        let ret = new.call(&mut c.store, arg).map_err(|e| trap(&c.store, e))?;
        let out = c.finish(ret);
        c.collect();
        c.ptr = match out? {
            J::Num(n) => n.as_i64().unwrap_or(0) as i32,
            _ => 0,
        };
        Ok(c)
    }
}

fn typed<P: wasmi::WasmParams, R: wasmi::WasmResults>(instance: &Instance, store: &Store<HostState>, name: &str) -> Result<TypedFunc<P, R>, CompileError> {
    instance.get_typed_func::<P, R>(store, name).map_err(|e| CompileError::Load(format!("{name}: {e}")))
}

fn trap(store: &Store<HostState>, e: wasmi::Error) -> CompileError {
    match &store.data().panic_message {
        Some(p) => CompileError::Trap(format!("{e} (panic: {p})")),
        None => CompileError::Trap(e.to_string()),
    }
}

/// One compiler instance bound to one schema. Not `Sync`: use from one thread at a time.
pub struct Compiler {
    store: Store<HostState>,
    instance: Instance,
    compile: TypedFunc<(i32, i32, i32), (i32, i32, i32)>,
    compile_batch: TypedFunc<(i32, i32, i32), (i32, i32, i32)>,
    dealloc: TypedFunc<i32, ()>,
    ptr: i32,
    poisoned: bool,
    fuel_per_compile: u64,
    module: Arc<CompilerModule>,
}

impl Compiler {
    /// One JSON-protocol query → plan (`Expression` JSON).
    pub fn compile(&mut self, request: &str) -> Result<Value, CompileError> {
        self.compile_ordered(request).map(|j| j.to_value())
    }

    /// A `{"batch":[…]}` request → `{"type":"multi",…}` or `{"type":"compacted",…}`.
    pub fn compile_batch(&mut self, request: &str) -> Result<Value, CompileError> {
        self.compile_batch_ordered(request).map(|j| j.to_value())
    }

    /// [`Compiler::compile`] keeping the plan's key order (which orders the fields of results).
    pub fn compile_ordered(&mut self, request: &str) -> Result<J, CompileError> {
        let f = self.compile;
        self.call(f, request)
    }

    /// [`Compiler::compile_batch`] keeping key order.
    pub fn compile_batch_ordered(&mut self, request: &str) -> Result<J, CompileError> {
        let f = self.compile_batch;
        self.call(f, request)
    }

    /// True once the instance trapped; it must not be used again.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// The module this instance came from.
    pub fn module(&self) -> &Arc<CompilerModule> {
        &self.module
    }

    fn call(&mut self, f: TypedFunc<(i32, i32, i32), (i32, i32, i32)>, request: &str) -> Result<J, CompileError> {
        if self.poisoned {
            return Err(CompileError::Trap("instance was poisoned by an earlier failure".into()));
        }
        let r = self.call_inner(f, request);
        if matches!(r, Err(CompileError::Trap(_))) {
            self.poisoned = true;
        }
        r
    }

    fn call_inner(&mut self, f: TypedFunc<(i32, i32, i32), (i32, i32, i32)>, request: &str) -> Result<J, CompileError> {
        self.store.data_mut().panic_message = None;
        self.store.set_fuel(self.fuel_per_compile).map_err(|e| CompileError::Trap(e.to_string()))?;
        let (ptr, len) = host::write_str(&mut self.store, request).map_err(|e| trap(&self.store, e))?;
        let ret = f.call(&mut self.store, (self.ptr, ptr, len)).map_err(|e| trap(&self.store, e))?;
        let out = self.finish(ret);
        self.collect();
        out
    }

    /// Frees the JS values the WASM no longer holds (roots: the externref table).
    fn collect(&mut self) {
        let Some(table) = self.store.data().table else { return };
        let size = table.size(&self.store);
        let mut roots = Vec::new();
        for i in 0..size {
            if let Some(wasmi::Ref::Extern(e)) = table.get(&self.store, i) {
                if !e.is_null() {
                    roots.push(host::slot_of(&self.store, e));
                }
            }
        }
        self.store.data_mut().arena.collect(roots);
    }

    /// Takes the `[ok, err, is_err]` triple: reads the externref slot out of the table and frees it.
    fn finish(&mut self, (ok, err, is_err): (i32, i32, i32)) -> Result<J, CompileError> {
        if is_err == 0 && ok >= 0 && !self.returns_ref() {
            return Ok(J::Num(ok.into()));
        }
        let idx = if is_err != 0 { err } else { ok };
        let table = match self.instance.get_export(&self.store, "__wbindgen_externrefs") {
            Some(Extern::Table(t)) => t,
            _ => return Err(CompileError::Trap("no externref table".into())),
        };
        let r = table.get(&self.store, idx as u32 as u64);
        self.dealloc.call(&mut self.store, idx).map_err(|e| trap(&self.store, e))?;
        let slot = match r {
            Some(wasmi::Ref::Extern(e)) => host::slot_of(&self.store, e),
            _ => crate::js::UNDEFINED,
        };
        if is_err == 0 {
            return self.store.data().arena.to_ordered(slot).map_err(|e| CompileError::Trap(e.into()));
        }
        let value = self.store.data().arena.to_json(slot).map_err(|e| CompileError::Trap(e.into()))?;
        let message = value.get("message").and_then(Value::as_str).map(str::to_owned).unwrap_or_else(|| value.to_string());
        Err(CompileError::Rejected {
            message,
            code: value.get("code").and_then(Value::as_str).map(str::to_owned),
            meta: value.get("meta").filter(|m| !m.is_null()).cloned(),
        })
    }

    /// `querycompiler_new` returns a raw pointer in its first slot; compile calls return a table index.
    fn returns_ref(&self) -> bool {
        self.ptr != 0
    }
}

impl Drop for Compiler {
    fn drop(&mut self) {
        if self.ptr != 0 && !self.poisoned {
            if let Ok(free) = self.instance.get_typed_func::<(i32, i32), ()>(&self.store, "__wbg_querycompiler_free") {
                let _ = free.call(&mut self.store, (self.ptr, 1));
            }
        }
    }
}
