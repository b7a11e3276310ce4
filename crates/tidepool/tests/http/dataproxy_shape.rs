//! Prisma 5/6 plans cached by query shape: requests that differ only in their values compile once
//! (their literals become parameters), and each still gets its own rows.

use anyhow::Result;
use base64::Engine as _;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tidepool_testkit::TestCluster;

use crate::common::*;

const SCHEMA: &str = "datasource db {\n  provider = \"postgresql\"\n  url = env(\"DATABASE_URL\")\n}\n\nenum Kind {\n  A\n  B @map(\"b\")\n}\n\nmodel Thing {\n  id Int @id\n  name String\n  kind Kind @default(A)\n}\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_differ_only_in_values_compile_once() -> Result<()> {
    let s = Setup::new("dp_shape").await?;
    let cluster = TestCluster::shared().await?;
    cluster
        .client_as(tidepool_testkit::SCRAM_USER, &s.real_db)
        .await?
        .batch_execute(
            "CREATE TYPE \"Kind\" AS ENUM ('A', 'b'); CREATE TABLE \"Thing\" (id int PRIMARY KEY, name text NOT NULL, kind \"Kind\" NOT NULL DEFAULT 'A')",
        )
        .await?;
    let p = s.start().await?;
    let b64 = base64::engine::general_purpose::STANDARD.encode(SCHEMA);
    let hash = hex::encode(Sha256::digest(b64.as_bytes()));
    let r = p.client.put(p.url(&format!("/5.22.0/{hash}/schema"))).header("authorization", format!("Bearer {KEY_A}")).body(b64).send().await?;
    assert_eq!(r.status(), 200, "{}", r.text().await?);
    let graphql = |body: Value| {
        let path = format!("/5.22.0/{hash}/graphql");
        let p = &p;
        async move { p.prisma(&path, Some(KEY_A), &body).await }
    };
    let before = p.app().dataproxy.plan_counts();
    for (id, name, kind) in [(1, "one", "A"), (2, "two", "B"), (3, "three", "B")] {
        let r = graphql(
            json!({"modelName":"Thing","action":"createOne","query":{"arguments":{"data":{"id":id,"name":name,"kind":kind}},"selection":{"$scalars":true}}}),
        )
        .await?;
        assert_eq!(r.json["data"]["createOneThing"], json!({"id":id,"name":name,"kind":kind}), "{}", r.text);
    }
    for (id, name) in [(1, "one"), (2, "two"), (3, "three")] {
        // As text: a client's key order is part of the request (json! would sort it).
        let body =
            format!(r#"{{"modelName":"Thing","action":"findUnique","query":{{"arguments":{{"where":{{"id":{id}}}}},"selection":{{"name":true,"id":true}}}}}}"#);
        let r = p.prisma_bytes(&format!("/5.22.0/{hash}/graphql"), Some(KEY_A), body.into_bytes()).await?;
        // Fields come back in the order the request selected them.
        assert_eq!(r.text, format!(r#"{{"data":{{"findUniqueThing":{{"name":"{name}","id":{id}}}}}}}"#));
    }
    let r =
        graphql(json!({"modelName":"Thing","action":"findMany","query":{"arguments":{"where":{"kind":"B"},"orderBy":{"id":"asc"}},"selection":{"id":true}}}))
            .await?;
    assert_eq!(r.json["data"]["findManyThing"], json!([{"id":2},{"id":3}]), "{}", r.text);
    // A dataloader batch (compacted findUnique): one plan for every batch of two ids.
    for ids in [[1, 3], [2, 9]] {
        let q = |id: i64| json!({"modelName":"Thing","action":"findUnique","query":{"arguments":{"where":{"id":id}},"selection":{"$scalars":true}}});
        let r = graphql(json!({"batch":[q(ids[0]), q(ids[1])]})).await?;
        let got: Vec<Value> = r.json["batchResult"].as_array().expect("batchResult").iter().map(|x| x["data"]["findUniqueThing"]["id"].clone()).collect();
        let want: Vec<Value> = ids.iter().map(|&i| if i == 9 { Value::Null } else { json!(i) }).collect();
        assert_eq!(got, want, "{}", r.text);
    }
    let (cached, compiled) = p.app().dataproxy.plan_counts();
    let (cached, compiled) = (cached - before.0, compiled - before.1);
    // createOne, findUnique, findMany, the batch: one compile each.
    assert_eq!(compiled, 4, "compiled {compiled}, cached {cached}");
    assert_eq!(cached, 5);
    Ok(())
}
