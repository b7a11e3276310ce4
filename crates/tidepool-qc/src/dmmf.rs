//! Runs Prisma's schema tooling (`@prisma/prisma-schema-wasm`, the build the Prisma CLI uses for
//! `get_dmmf`; same engines commit as the query compiler) to turn an uploaded schema into its
//! DMMF, from which [`crate::graph`] builds the parameterization graph. Four wasm-bindgen imports,
//! hosted by the same [`crate::host`] as the compiler; fuel- and memory-bounded like it.
//!
//! Prisma 7's schema validation refuses the datasource `url`/`directUrl`/`shadowDatabaseUrl`
//! properties that every Prisma 5/6 schema carries; they do not shape the DMMF, so
//! [`strip_datasource_urls`] removes them first.

use crate::compiler::{CompileError, Limits};
use crate::glue::{self, Import};
use crate::host::{self, HostState};
use std::path::{Path, PathBuf};
use wasmi::{Config, Engine, Linker, Module, Store, StoreLimitsBuilder, TypedFunc};

/// The loaded `prisma_schema_build_bg.wasm`, shared (`Send + Sync`); each call gets a fresh instance.
pub struct DmmfModule {
    engine: Engine,
    module: Module,
    linker: Linker<HostState>,
    limits: Limits,
}

impl std::fmt::Debug for DmmfModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DmmfModule")
    }
}

/// `<dir of the query compiler's cache>/prisma-schema-wasm/<version>/prisma_schema_build_bg.wasm`.
pub fn default_schema_wasm_path() -> Option<PathBuf> {
    let qc = crate::locate::default_wasm_path()?;
    // …/query-compiler/<version>/postgresql/x.wasm → …/prisma-schema-wasm/<version>/
    let cache = qc.parent()?.parent()?.parent()?.parent()?;
    Some(cache.join("prisma-schema-wasm").join(crate::PINNED_VERSION).join("prisma_schema_build_bg.wasm"))
}

impl DmmfModule {
    /// Loads the `.wasm` and its CommonJS glue (`prisma_schema_build.js`, same directory).
    pub fn load(wasm_path: &Path, limits: Limits) -> Result<Self, CompileError> {
        let wasm = std::fs::read(wasm_path).map_err(|e| CompileError::Load(format!("{}: {e}", wasm_path.display())))?;
        let glue_path = wasm_path.with_file_name("prisma_schema_build.js");
        let glue = std::fs::read_to_string(&glue_path).map_err(|e| CompileError::Load(format!("{}: {e}", glue_path.display())))?;
        let mut config = Config::default();
        config.consume_fuel(true);
        let engine = Engine::new(&config);
        let module = Module::new(&engine, &wasm).map_err(|e| CompileError::Load(e.to_string()))?;
        let kinds = glue::classify(&glue);
        let mut linker = Linker::new(&engine);
        for import in module.imports() {
            let kind: Import = *kinds.get(import.name()).ok_or_else(|| CompileError::Load(format!("schema wasm import `{}` is not hosted", import.name())))?;
            host::define(&mut linker, import.module(), import.name(), kind).map_err(|e| CompileError::Load(e.to_string()))?;
        }
        Ok(Self { engine, module, linker, limits })
    }

    /// The DMMF JSON text of `schema` (Prisma schema source).
    pub fn dmmf(&self, schema: &str) -> Result<String, CompileError> {
        let limits = StoreLimitsBuilder::new().memory_size(self.limits.max_memory_bytes).trap_on_grow_failure(true).build();
        let mut store = Store::new(&self.engine, HostState::new(limits, self.limits.max_values));
        store.limiter(|s| &mut s.limits);
        store.set_fuel(self.limits.fuel_per_schema).map_err(|e| CompileError::Load(e.to_string()))?;
        let trap = |store: &Store<HostState>, e: wasmi::Error| match &store.data().panic_message {
            Some(p) => CompileError::Trap(format!("{e} (panic: {p})")),
            None => CompileError::Trap(e.to_string()),
        };
        let instance = self.linker.instantiate_and_start(&mut store, &self.module).map_err(|e| CompileError::Load(e.to_string()))?;
        let typed = |name: &str| -> Result<wasmi::Func, CompileError> {
            instance.get_func(&store, name).ok_or_else(|| CompileError::Load(format!("no export {name}")))
        };
        let memory = instance.get_memory(&store, "memory").ok_or_else(|| CompileError::Load("no memory export".into()))?;
        let malloc: TypedFunc<(i32, i32), i32> = typed("__wbindgen_malloc")?.typed(&store).map_err(|e| CompileError::Load(e.to_string()))?;
        let free: TypedFunc<(i32, i32, i32), ()> = typed("__wbindgen_free")?.typed(&store).map_err(|e| CompileError::Load(e.to_string()))?;
        let start: TypedFunc<(), ()> = typed("__wbindgen_start")?.typed(&store).map_err(|e| CompileError::Load(e.to_string()))?;
        let get_dmmf: TypedFunc<(i32, i32), (i32, i32, i32, i32)> = typed("get_dmmf")?.typed(&store).map_err(|e| CompileError::Load(e.to_string()))?;
        store.data_mut().memory = Some(memory);
        store.data_mut().malloc = Some(malloc);
        store.data_mut().table = instance.get_table(&store, "__wbindgen_externrefs");
        start.call(&mut store, ()).map_err(|e| trap(&store, e))?;

        let params = serde_json::json!({ "prismaSchema": strip_datasource_urls(schema), "noColor": true }).to_string();
        let (p, l) = host::write_str(&mut store, &params).map_err(|e| trap(&store, e))?;
        let (ptr, len, err, is_err) = get_dmmf.call(&mut store, (p, l)).map_err(|e| trap(&store, e))?;
        if is_err != 0 {
            let slot = match store.data().table.and_then(|t| t.get(&store, err as u32 as u64)) {
                Some(wasmi::Ref::Extern(e)) => host::slot_of(&store, e),
                _ => crate::js::UNDEFINED,
            };
            let msg = store.data().arena.to_js_string(slot);
            return Err(CompileError::Rejected { message: msg, code: None, meta: None });
        }
        let text = host::read_str(&store, memory, ptr, len).map_err(|e| trap(&store, e))?;
        free.call(&mut store, (ptr, len, 1)).map_err(|e| trap(&store, e))?;
        Ok(text)
    }
}

/// Drops `url`, `directUrl` and `shadowDatabaseUrl` lines inside `datasource` blocks.
pub fn strip_datasource_urls(schema: &str) -> String {
    let mut out = String::with_capacity(schema.len());
    let mut in_datasource = false;
    for line in schema.split_inclusive('\n') {
        let t = line.trim_start();
        if !in_datasource && t.starts_with("datasource") && t.contains('{') {
            in_datasource = true;
        } else if in_datasource && t.starts_with('}') {
            in_datasource = false;
        } else if in_datasource {
            let key = t.split(|c: char| c == '=' || c.is_whitespace()).next().unwrap_or("");
            if matches!(key, "url" | "directUrl" | "shadowDatabaseUrl") {
                continue;
            }
        }
        out.push_str(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_datasource_urls_are_dropped() {
        let s = "datasource db {\n  provider = \"postgresql\"\n  url = env(\"DATABASE_URL\")\n  directUrl=\"x\"\n}\nmodel M {\n  url String @id\n}\n";
        assert_eq!(strip_datasource_urls(s), "datasource db {\n  provider = \"postgresql\"\n}\nmodel M {\n  url String @id\n}\n");
    }
}
