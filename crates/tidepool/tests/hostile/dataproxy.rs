//! Attacks on the Prisma 5/6 DataProxy routes (`/{version}/{hash}/…`): unknown schema hashes,
//! schema uploads that lie about their hash, are too large, are not base64 or not a schema,
//! bodies the query compiler rejects, and another key's interactive transaction.

use anyhow::{ensure, Context, Result};
use base64::Engine as _;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::common::*;
use crate::{case, Case, Endpoint, Group};

const SCHEMA: &str = "datasource db {\n  provider = \"postgresql\"\n  url = env(\"DATABASE_URL\")\n}\n\nmodel Thing {\n  id Int @id\n  name String\n}\n";

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

fn hash_of(b64: &str) -> String {
    hex::encode(Sha256::digest(b64.as_bytes()))
}

async fn send(tp: &Tidepool, method: &str, path: &str, key: &str, body: &[u8], extra: &[(&str, &[u8])]) -> Result<HttpAnswer> {
    let auth = format!("Bearer {key}").into_bytes();
    let mut h: Vec<(&str, &[u8])> = vec![("authorization", &auth), ("content-type", b"text/plain;charset=UTF-8")];
    h.extend_from_slice(extra);
    http_raw(tp.http, &request(method, path, &h, body)).await
}

/// Uploads [`SCHEMA`] with `key`; returns its hash.
async fn upload(tp: &Tidepool, key: &str) -> Result<String> {
    let body = b64(SCHEMA);
    let hash = hash_of(&body);
    let a = send(tp, "PUT", &format!("/5.22.0/{hash}/schema"), key, body.as_bytes(), &[]).await?;
    ensure!(a.status == Some(200), "schema upload: {:?} {}", a.status, a.body);
    Ok(hash)
}

fn secret_free(a: &HttpAnswer) -> Result<()> {
    for secret in [KEY_A, KEY_B, KEY_OTHER] {
        ensure!(!a.body.contains(secret), "a key is echoed: {}", a.body);
    }
    Ok(())
}

/// A DataProxy service error: this status and a body with this top-level key.
fn expect_service(a: &HttpAnswer, status: u16, key: &str) -> Result<()> {
    secret_free(a)?;
    ensure!(a.status == Some(status) && a.json.get(key).is_some(), "want {status} {{{key}: …}}, got {:?} {}", a.status, a.body);
    Ok(())
}

/// A query error in the 5.x engine's shape: HTTP 200 `{"errors":[{user_facing_error:{error_code}}]}`.
fn expect_query_error(a: &HttpAnswer, code: &str) -> Result<()> {
    secret_free(a)?;
    let got = a.json.pointer("/errors/0/user_facing_error/error_code").and_then(Value::as_str);
    ensure!(a.status == Some(200) && got == Some(code), "want 200 errors[{code}], got {:?} {}", a.status, a.body);
    Ok(())
}

fn find_thing() -> Vec<u8> {
    json!({"modelName":"Thing","action":"findMany","query":{"arguments":{},"selection":{"$scalars":true}}}).to_string().into_bytes()
}

pub fn attacks() -> Group {
    let cases: Vec<Case> = vec![
        case(Endpoint::Prisma, true, "dataproxy graphql without a key", |tp| async move {
            let a = http_raw(tp.http, &request("POST", &format!("/5.22.0/{}/graphql", "0".repeat(64)), &[], &find_thing())).await?;
            ensure!(a.status == Some(401), "{:?} {}", a.status, a.body);
            Ok(())
        }),
        case(Endpoint::Prisma, false, "dataproxy graphql with an unknown schema hash", |tp| async move {
            let a = send(&tp, "POST", &format!("/5.22.0/{}/graphql", "ab".repeat(32)), KEY_A, &find_thing(), &[]).await?;
            ensure!(a.json.pointer("/EngineNotStarted/reason").and_then(Value::as_str) == Some("SchemaMissing"), "{:?} {}", a.status, a.body);
            ensure!(a.status == Some(404), "{:?}", a.status);
            Ok(())
        }),
        case(Endpoint::Prisma, false, "dataproxy schema upload under the wrong hash", |tp| async move {
            let a = send(&tp, "PUT", &format!("/5.22.0/{}/schema", "ab".repeat(32)), KEY_A, b64(SCHEMA).as_bytes(), &[]).await?;
            expect_service(&a, 400, "InvalidRequestError")
        }),
        case(Endpoint::Prisma, false, "dataproxy schema upload over the size limit", |tp| async move {
            let big = b64(&format!("{SCHEMA}\n//{}\n", "x".repeat(1 << 20)));
            let a = send(&tp, "PUT", &format!("/5.22.0/{}/schema", hash_of(&big)), KEY_A, big.as_bytes(), &[]).await?;
            expect_service(&a, 413, "InvalidRequestError")
        }),
        case(Endpoint::Prisma, false, "dataproxy schema upload that is not base64", |tp| async move {
            let junk = "%%% not base64 at all \u{1}";
            let a = send(&tp, "PUT", &format!("/5.22.0/{}/schema", hash_of(junk)), KEY_A, junk.as_bytes(), &[]).await?;
            expect_service(&a, 400, "InvalidRequestError")
        }),
        case(Endpoint::Prisma, false, "dataproxy schema upload that is not a schema", |tp| async move {
            let body = b64("model {{{ ]]] this is not prisma\n\u{0}");
            let hash = hash_of(&body);
            let a = send(&tp, "PUT", &format!("/5.22.0/{hash}/schema"), KEY_A, body.as_bytes(), &[]).await?;
            secret_free(&a)?;
            match a.status {
                // Refused at upload: the client's "engine startup" error.
                Some(400) => expect_service(&a, 400, "EngineStartupError"),
                // Accepted (the compiler parses leniently): queries get the engine's errors.
                Some(200) => {
                    let q = send(&tp, "POST", &format!("/5.22.0/{hash}/graphql"), KEY_A, &find_thing(), &[]).await?;
                    secret_free(&q)?;
                    ensure!(
                        matches!(q.status, Some(200 | 500)) && (q.json.get("errors").is_some() || q.json.get("is_panic").is_some()),
                        "{:?} {}",
                        q.status,
                        q.body
                    );
                    Ok(())
                }
                other => anyhow::bail!("unexpected {other:?} {}", a.body),
            }
        }),
        case(Endpoint::Prisma, false, "dataproxy graphql bodies the compiler rejects", |tp| async move {
            let hash = upload(&tp, KEY_A).await?;
            let path = format!("/5.22.0/{hash}/graphql");
            let unknown_field = json!({"modelName":"Thing","action":"findMany","query":{"arguments":{"where":{"nope":1}},"selection":{"$scalars":true}}});
            expect_query_error(&send(&tp, "POST", &path, KEY_A, unknown_field.to_string().as_bytes(), &[]).await?, "P2009")?;
            for body in [json!({"modelName":"Nope","action":"findMany","query":{}}), json!({"foo": 1}), json!({"batch": [{"x": 1}]}), json!([1, 2])] {
                let a = send(&tp, "POST", &path, KEY_A, body.to_string().as_bytes(), &[]).await?;
                secret_free(&a)?;
                ensure!(a.status == Some(200) && a.json.get("errors").is_some(), "{body}: {:?} {}", a.status, a.body);
            }
            expect_service(&send(&tp, "POST", &path, KEY_A, b"{not json", &[]).await?, 400, "InvalidRequestError")?;
            let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
            expect_service(&send(&tp, "POST", &path, KEY_A, deep.as_bytes(), &[]).await?, 400, "InvalidRequestError")?;
            // Still compiling afterwards.
            let a = send(&tp, "POST", &path, KEY_A, &find_thing(), &[]).await?;
            ensure!(a.status == Some(200) && a.json.get("errors").is_some(), "relation \"Thing\" does not exist is an engine error: {:?} {}", a.status, a.body);
            Ok(())
        }),
        case(Endpoint::Prisma, false, "dataproxy hostile values where plans take parameters", |tp| async move {
            let hash = upload(&tp, KEY_A).await?;
            let path = format!("/5.22.0/{hash}/graphql");
            let find =
                |w: &str| format!(r#"{{"modelName":"Thing","action":"findMany","query":{{"arguments":{{"where":{w}}},"selection":{{"$scalars":true}}}}}}"#);
            for w in [
                r#"{"id":99999999999999999999}"#,
                r#"{"id":-0.0,"name":"\u0000"}"#,
                r#"{"id":{"in":[1,"x",null,{"$type":"BigInt","value":"1"}]}}"#,
                // A placeholder the client wrote itself: it binds nothing of anyone else's.
                r#"{"id":{"$type":"Param","value":{"name":"%1","type":"Int"}}}"#,
                r#"{"name":{"$type":"Param","value":{"name":"%1","type":"String"}},"id":5}"#,
                r#"{"AND":[{"AND":[{"AND":[{"AND":[{"AND":[{"AND":[{"AND":[{"AND":[{"id":1}]}]}]}]}]}]}]}]}"#,
            ] {
                let a = send(&tp, "POST", &path, KEY_A, find(w).as_bytes(), &[]).await?;
                secret_free(&a)?;
                // An engine error (the table does not exist in this database) or a refusal, never a crash.
                let refused = ["errors", "InvalidRequestError", "error_code"].iter().any(|k| a.json.get(*k).is_some());
                ensure!(matches!(a.status, Some(200 | 400)) && refused, "{w}: {:?} {}", a.status, a.body);
            }
            let a = send(&tp, "POST", &path, KEY_A, find(r#"{"id":1e400}"#).as_bytes(), &[]).await?;
            expect_service(&a, 400, "InvalidRequestError")
        }),
        case(Endpoint::Prisma, false, "dataproxy schema of another database is not visible", |tp| async move {
            let hash = upload(&tp, KEY_A).await?;
            let a = send(&tp, "POST", &format!("/5.22.0/{hash}/graphql"), KEY_OTHER, &find_thing(), &[]).await?;
            expect_service(&a, 404, "EngineNotStarted")
        }),
        case(Endpoint::Prisma, false, "dataproxy another key's interactive transaction", |tp| async move {
            let hash = upload(&tp, KEY_A).await?;
            upload(&tp, KEY_B).await?;
            let a = send(&tp, "POST", &format!("/5.22.0/{hash}/transaction/start"), KEY_A, br#"{"max_wait":5000,"timeout":10000}"#, &[]).await?;
            ensure!(a.status == Some(200), "start: {:?} {}", a.status, a.body);
            let id = a.json["id"].as_str().context("no id")?.to_owned();
            let endpoint = a.json.pointer("/data-proxy/endpoint").and_then(Value::as_str).context("no endpoint")?;
            ensure!(endpoint.ends_with(&format!("/5.22.0/{hash}/itx/{id}")) && endpoint.starts_with("http"), "{endpoint}");
            let raw = json!({"action":"queryRaw","query":{"arguments":{"query":"SELECT 1 AS n","parameters":"[]"},"selection":{}}}).to_string();
            let tx = id.as_bytes().to_vec();
            let a = send(&tp, "POST", &format!("/5.22.0/{hash}/itx/{id}/graphql"), KEY_B, raw.as_bytes(), &[("x-transaction-id", &tx)]).await?;
            expect_query_error(&a, "P2028")?;
            let a = send(&tp, "POST", &format!("/5.22.0/{hash}/itx/{id}/commit"), KEY_B, b"", &[("x-transaction-id", &tx)]).await?;
            secret_free(&a)?;
            ensure!(a.status != Some(200) && a.json["error_code"] == "P2028", "{:?} {}", a.status, a.body);
            let a = send(&tp, "POST", &format!("/5.22.0/{hash}/itx/{id}/graphql"), KEY_A, raw.as_bytes(), &[("x-transaction-id", &tx)]).await?;
            ensure!(a.status == Some(200) && a.json.pointer("/data/queryRaw/rows/0/0") == Some(&json!(1)), "owner: {:?} {}", a.status, a.body);
            let a = send(&tp, "POST", &format!("/5.22.0/{hash}/itx/{id}/rollback"), KEY_A, b"", &[("x-transaction-id", &tx)]).await?;
            ensure!(a.status == Some(200), "owner's rollback: {:?} {}", a.status, a.body);
            Ok(())
        }),
    ];
    Group { name: "prisma dataproxy", parallel: 2, cases }
}
