//! Integration tests of tidepool's HTTP listener against a real PostgreSQL (the testkit's shared
//! throwaway cluster): the Prisma Accelerate-compatible API, Neon's `POST /sql`, and Postgres over
//! WebSocket. tidepool runs in-process, each test with its own config and its own database.
//! Failures are checked for their status codes and error fields, and each is followed by a normal
//! request that must still succeed.

#[allow(dead_code)]
mod common;

mod auth_throttle;
mod cache;
mod cache_nodes;
mod cluster_itx;
mod dashboard;
mod dataproxy_shape;
mod hardening;
mod neon;
mod prisma;
mod roles;
mod stats;
mod ws;
