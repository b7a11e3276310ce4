//! The Prisma 5/6 DataProxy request path before the compiler: the order-preserving JSON parse
//! (`tidepool_qc::J`) of an arbitrary `/graphql` body, then `tidepool_qc::parameterize` against a
//! small hand-written schema graph (`crates/tidepool-qc/src/testdata/mini_dmmf.json`), and
//! `ParamGraph::from_dmmf` on the same bytes.
//!
//! Invariants:
//! * no panic, no stack overflow (parse nesting is capped by serde_json, rewriting by `MAX_DEPTH`);
//! * the rewritten request is JSON and re-parses to the same tree;
//! * every placeholder in the rewritten request names a value, and every value is named by one;
//! * parameterizing is deterministic, and a request with no values to lift comes back unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::collections::BTreeSet;
use std::sync::OnceLock;
use tidepool_qc::{parameterize, ParamGraph, J};

fn graph() -> &'static ParamGraph {
    static G: OnceLock<ParamGraph> = OnceLock::new();
    G.get_or_init(|| ParamGraph::from_dmmf(include_str!("../../crates/tidepool-qc/src/testdata/mini_dmmf.json")).expect("mini DMMF"))
}

/// Placeholder names used in `j`.
fn names(j: &J, out: &mut BTreeSet<String>, depth: usize) {
    assert!(depth < 512);
    match j {
        J::Obj(m) => {
            if j.get("$type").and_then(J::as_str) == Some("Param") {
                if let Some(n) = j.get("value").and_then(|v| v.get("name")).and_then(J::as_str) {
                    out.insert(n.to_owned());
                }
            }
            for (_, v) in m {
                names(v, out, depth + 1);
            }
        }
        J::Arr(a) => a.iter().for_each(|v| names(v, out, depth + 1)),
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = ParamGraph::from_dmmf(text);
    }
    let Ok(request) = serde_json::from_slice::<J>(data) else { return };
    let Some(out) = parameterize(graph(), &request) else {
        assert!(!matches!(request, J::Obj(_)));
        return;
    };
    let again: J = serde_json::from_str(&out.request).expect("rewritten request is JSON");
    assert_eq!(again.to_json_string(), out.request);
    let mut used = BTreeSet::new();
    names(&again, &mut used, 0);
    let mut had = BTreeSet::new();
    names(&request, &mut had, 0);
    let bound: BTreeSet<String> = out.params.keys().cloned().collect();
    // Placeholders the client sent itself are not ours to bind.
    assert!(bound.iter().all(|n| used.contains(n)), "unused value: {bound:?} vs {used:?}");
    assert!(used.iter().all(|n| bound.contains(n) || had.contains(n)), "unbound placeholder: {used:?} vs {bound:?}");
    let second = parameterize(graph(), &request).expect("deterministic");
    assert_eq!(second.request, out.request);
    if out.params.is_empty() {
        assert_eq!(out.request, request.to_json_string());
    }
});
