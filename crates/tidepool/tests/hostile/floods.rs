//! Floods on the wire listener: many idle pre-auth connections, concurrent wrong passwords,
//! pipelined queries and Syncs by the ten thousand, abandoned transactions, and a client that
//! writes without ever reading its answers.

use anyhow::{ensure, Context};
use tokio::io::AsyncWriteExt;

use crate::common::*;
use crate::msgs::{declared, frame, sync};
use crate::raw::{query_msg, Raw};
use crate::wire::{check, describe, still_works, Expect};
use crate::{case, Endpoint, Group};

pub fn wire() -> Group {
    let cases = vec![
        case(Endpoint::Wire, true, "200 idle pre-auth connections", |tp| async move {
            let mut conns = Vec::new();
            for _ in 0..200 {
                let mut r = Raw::connect(tp.pg).await?;
                let _ = r.send(&declared(None, 40, &[0, 3, 0, 0])).await;
                conns.push(r);
            }
            for mut r in conns {
                check(&mut r, Expect::Closed).await?;
            }
            Ok(())
        }),
        case(Endpoint::Wire, true, "50 concurrent wrong passwords", |tp| async move {
            let tasks: Vec<_> = (0..50)
                .map(|i| {
                    let config = tp.pg_config(if i % 2 == 0 { MALLORY } else { TRENT }, Some("wrong"), DB);
                    tokio::spawn(async move { pg_connect(&config).await.err().and_then(|e| e.as_db_error().map(|d| d.code().code().to_owned())) })
                })
                .collect();
            for t in tasks {
                let code = t.await?;
                ensure!(code.as_deref() == Some("28P01"), "wrong password answered {code:?}");
            }
            Ok(())
        }),
        case(Endpoint::Wire, false, "10,000 pipelined queries in one write", |tp| async move {
            let (mut r, _) = Raw::login_trust(tp.pg, CAROL, DB, &[]).await?;
            r.send(&query_msg("SELECT 1").repeat(10_000)).await?;
            for i in 0..10_000 {
                let msgs = r.until_ready().await.with_context(|| format!("answer {i}"))?;
                ensure!(!msgs.iter().any(|m| m.tag == b'E'), "query {i}: {}", describe(&msgs));
            }
            still_works(&mut r).await
        }),
        case(Endpoint::Wire, false, "50,000 pipelined Syncs", |tp| async move {
            let (mut r, _) = Raw::login_trust(tp.pg, CAROL, DB, &[]).await?;
            r.send(&sync().repeat(50_000)).await?;
            for i in 0..50_000 {
                r.until_ready().await.with_context(|| format!("Sync {i}"))?;
            }
            still_works(&mut r).await
        }),
        case(Endpoint::Wire, false, "30 sessions open a transaction and vanish", |tp| async move {
            for _ in 0..30 {
                let (mut r, _) = Raw::login_trust(tp.pg, CAROL, DB, &[]).await?;
                r.query("BEGIN; SELECT 1").await?;
            }
            let c = pg_connect(&tp.pg_config(ALICE, Some(ALICE_PW), DB)).await?;
            ensure!(c.query_one("SELECT 1", &[]).await?.get::<_, i32>(0) == 1);
            Ok(())
        }),
        case(Endpoint::Wire, false, "8 sessions hold the whole pool in idle transactions", |tp| async move {
            // Every server of the pool pinned by an idle BEGIN: idle_transaction_timeout (2 s)
            // ends each with 25P03 and the healthy clients get their connections back.
            let mut held = Vec::new();
            for _ in 0..8 {
                let (mut r, _) = Raw::login_trust(tp.pg, CAROL, DB, &[]).await?;
                let msgs = r.query("BEGIN; SELECT 1").await?;
                ensure!(msgs.last().is_some_and(|m| m.tag == b'Z' && m.body == [b'T']), "not in a transaction: {}", describe(&msgs));
                held.push(r);
            }
            for mut r in held {
                check(&mut r, Expect::Fatal(&["25P03"])).await?;
            }
            Ok(())
        }),
        case(Endpoint::Wire, false, "300 logged-in idle sessions", |tp| async move {
            let mut sessions = Vec::new();
            for i in 0..300 {
                let (r, _) = Raw::login_trust(tp.pg, CAROL, DB, &[]).await.with_context(|| format!("login {i}"))?;
                sessions.push(r);
            }
            for r in sessions.iter_mut().step_by(50) {
                still_works(r).await?;
            }
            Ok(())
        }),
        case(Endpoint::Wire, true, "2,000 CancelRequests with guessed keys", |tp| async move {
            // None may cancel the healthy clients' queries (they would see 57014).
            for chunk in 0..40u32 {
                let tasks: Vec<_> = (0..50u32)
                    .map(|i| {
                        let addr = tp.pg;
                        tokio::spawn(async move {
                            let mut r = Raw::connect(addr).await?;
                            let n = chunk * 50 + i;
                            let mut body = 80_877_102i32.to_be_bytes().to_vec();
                            body.extend_from_slice(&(n as i32).to_be_bytes());
                            body.extend_from_slice(&(n.wrapping_mul(2_654_435_761) as i32).to_be_bytes());
                            r.send(&declared(None, 16, &body)).await?;
                            check(&mut r, Expect::Closed).await
                        })
                    })
                    .collect();
                for t in tasks {
                    t.await??;
                }
            }
            Ok(())
        }),
        case(Endpoint::Wire, false, "20,000 Parse/Bind/Execute without Sync, then Sync", |tp| async move {
            let (mut r, _) = Raw::login_trust(tp.pg, CAROL, DB, &[]).await?;
            let one = [frame(b'P', b"\0SELECT 1\0\0\0"), frame(b'B', b"\0\0\0\0\0\0\0\0"), frame(b'E', b"\0\0\0\0\0")].concat();
            r.send(&one.repeat(20_000)).await?;
            r.send(&sync()).await?;
            let msgs = r.until_ready().await?;
            ensure!(!msgs.iter().any(|m| m.tag == b'E'), "{}", describe(&msgs[msgs.len().saturating_sub(3)..]));
            ensure!(msgs.iter().filter(|m| m.tag == b'C').count() == 20_000, "not every Execute was answered");
            still_works(&mut r).await
        }),
        case(Endpoint::Wire, false, "pipelined queries while never reading", |tp| async move {
            // 64 MiB of queries written without reading a byte of the answers (which would be
            // ~2 GB): tidepool must stop reading (backpressure), not buffer everything.
            let (mut r, _) = Raw::login_trust(tp.pg, CAROL, DB, &[]).await?;
            let batch = query_msg("SELECT repeat('x', 1000)").repeat(1000);
            let writer = async {
                for _ in 0..(64 << 20) / batch.len() {
                    if tokio::time::timeout(std::time::Duration::from_secs(2), r.s.write_all(&batch)).await.is_err() {
                        return true;
                    }
                }
                false
            };
            let blocked = writer.await;
            ensure!(blocked, "tidepool accepted 64 MiB of queries without the client reading any answer");
            Ok(())
        }),
    ];
    Group { name: "wire floods", parallel: 2, cases }
}
