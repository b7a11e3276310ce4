//! Compiler threads: a fixed set of OS threads (large stacks: the interpreter recurses through
//! host calls), each keeping one [`Compiler`] per recently used schema. Jobs come from one bounded
//! queue; results go back through the job's callback, so async callers never block a runtime
//! thread on WASM.

use crate::compiler::{CompileError, Compiler, CompilerModule};
use crate::ordered::J;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

const STACK_BYTES: usize = 64 << 20;
const QUEUE: usize = 1024;

/// What a job asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// Only build (or find) the compiler for the schema: validates an upload.
    Load,
    Compile,
    CompileBatch,
}

/// One unit of work for a compiler thread.
pub struct Job {
    /// Identifies the schema (e.g. database + schema hash); equal keys must have equal text.
    pub schema_key: String,
    pub schema: Arc<str>,
    pub kind: JobKind,
    pub request: String,
    pub reply: Box<dyn FnOnce(Result<J, CompileError>) + Send>,
}

/// The queue is full: the caller should answer "busy".
#[derive(Debug, thiserror::Error)]
#[error("the query compiler is busy")]
pub struct Busy;

pub struct CompilerPool {
    tx: SyncSender<Job>,
}

impl CompilerPool {
    /// Starts `threads` workers; each keeps at most `schemas_per_thread` compilers.
    pub fn start(module: Arc<CompilerModule>, threads: usize, schemas_per_thread: usize) -> std::io::Result<Self> {
        let (tx, rx) = sync_channel::<Job>(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let (module, rx) = (Arc::clone(&module), Arc::clone(&rx));
            std::thread::Builder::new()
                .name(format!("tidepool-qc-{i}"))
                .stack_size(STACK_BYTES)
                .spawn(move || worker(module, rx, schemas_per_thread.max(1)))?;
        }
        Ok(Self { tx })
    }

    pub fn submit(&self, job: Job) -> Result<(), Busy> {
        match self.tx.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => Err(Busy),
        }
    }
}

fn worker(module: Arc<CompilerModule>, rx: Arc<Mutex<Receiver<Job>>>, cap: usize) {
    // Most recently used last.
    let mut compilers: Vec<(String, Compiler)> = Vec::new();
    loop {
        let job = {
            let Ok(rx) = rx.lock() else { return };
            match rx.recv() {
                Ok(j) => j,
                Err(_) => return, // pool dropped
            }
        };
        let at = compilers.iter().position(|(k, _)| *k == job.schema_key);
        let mut compiler = match at {
            Some(i) => compilers.remove(i).1,
            None => match module.instantiate(&job.schema, true) {
                Ok(c) => c,
                Err(e) => {
                    (job.reply)(Err(e));
                    continue;
                }
            },
        };
        let result = match job.kind {
            JobKind::Load => Ok(J::Null),
            JobKind::Compile => compiler.compile_ordered(&job.request),
            JobKind::CompileBatch => compiler.compile_batch_ordered(&job.request),
        };
        if !compiler.is_poisoned() {
            if compilers.len() >= cap {
                compilers.remove(0);
            }
            compilers.push((job.schema_key, compiler));
        }
        (job.reply)(result);
    }
}
