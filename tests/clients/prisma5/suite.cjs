// Runs scenarios.cjs with the Prisma client of the directory it runs from:
// * tests/clients/prisma5 or prisma6 — Prisma 5.22 / 6.19 generated `--no-engine`,
//   `@prisma/client/edge` + withAccelerate(), exactly as an Accelerate app uses it, against
//   tidepool's DataProxy front end:
//     DATABASE_URL='prisma://localhost:PORT/?api_key=KEY' NODE_EXTRA_CA_CERTS=cert.pem node ../prisma5/suite.cjs
// * tests/clients/prisma — the Prisma 7 client generated there (same models, plus Sample),
//   `new PrismaClient({ accelerateUrl })` + withAccelerate(), e.g. against Prisma's reference
//   executor (run-reference.sh exports ACCELERATE_URL):
//     DATABASE_URL=postgresql://... ./run-reference.sh -- node --import tsx ../prisma5/suite.cjs
// The tables (../prisma/schema.sql) are created and emptied by the caller.
// RESULTS_OUT=file writes every recorded result (same format as ../prisma/suite.mjs, compared
// with ../prisma/diff.mjs). Ends with "N passed, N failed".
'use strict'
const fs = require('node:fs')
const path = require('node:path')
const { pathToFileURL } = require('node:url')
const assert = require('node:assert/strict')
const { scenarios } = require('./scenarios.cjs')

// Resolve the packages of the client directory this runs from (prisma5, prisma6 or prisma).
const here = require('node:module').createRequire(path.join(process.cwd(), 'package.json'))
const version = here('@prisma/client/package.json').version
const major = Number(version.split('.')[0])

async function client() {
  const { withAccelerate } = here('@prisma/extension-accelerate')
  if (major < 7) {
    const { PrismaClient, Prisma } = here('@prisma/client/edge')
    const url = process.env.DATABASE_URL
    return { prisma: new PrismaClient({ datasourceUrl: url }).$extends(withAccelerate()), Prisma, url }
  }
  // The `prisma-client` generator emits TypeScript: run with `node --import tsx`.
  const { PrismaClient, Prisma } = await import(pathToFileURL(path.join(process.cwd(), 'generated/prisma/client.ts')).href)
  const url = process.env.ACCELERATE_URL
  return { prisma: new PrismaClient({ accelerateUrl: url }).$extends(withAccelerate()), Prisma, url }
}

// ---------------------------------------------------------------------------
// Recording: deterministic, comparable across client generations and runs.
// BigInt/Decimal/Date/Bytes become tagged values; values that depend on the run are masked:
// generated uuids/cuids become `<uuid#n>` in order of first appearance, and timestamps near
// "now" (`@default(now())`, `@updatedAt`) become `<now>`. Errors are `{code, meta}` (see
// errorMeta). Auto-increment ids are kept as they are: every run starts on a fresh database,
// so equal operations give equal ids.
// ---------------------------------------------------------------------------
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i
const CUID_RE = /^c[a-z0-9]{24}$/
const NOW_WINDOW_MS = 6 * 60 * 60 * 1000

function makeNormalizer(Prisma) {
  const ids = new Map()
  const placeholder = (kind, s) => {
    if (!ids.has(s)) ids.set(s, `<${kind}#${ids.size + 1}>`)
    return ids.get(s)
  }
  const norm = (v) => {
    if (v === undefined) return { $undefined: true }
    if (v === null) return null
    if (typeof v === 'bigint') return { $bigint: v.toString() }
    if (typeof v === 'number') return Number.isFinite(v) ? v : { $number: String(v) }
    if (typeof v === 'string') {
      if (UUID_RE.test(v)) return placeholder('uuid', v)
      if (CUID_RE.test(v)) return placeholder('cuid', v)
      return v
    }
    if (typeof v !== 'object') return v
    if (Prisma.Decimal.isDecimal(v)) return { $decimal: v.toString() }
    if (v instanceof Date) {
      if (Number.isNaN(v.getTime())) return { $date: 'Invalid Date' }
      if (Math.abs(v.getTime() - Date.now()) < NOW_WINDOW_MS) return { $date: '<now>' }
      return { $date: v.toISOString() }
    }
    if (v instanceof Uint8Array) return { $bytes: Buffer.from(v).toString('base64') }
    if (v instanceof Error) return { $error: { code: v.code ?? null, meta: norm(errorMeta(v)) } }
    if (Array.isArray(v)) return v.map(norm)
    const out = {}
    for (const [k, val] of Object.entries(v)) out[k] = norm(val)
    return out
  }
  return norm
}

// Meta keys whose shape belongs to the client generation, not to the server's answer: the
// 5.x/6.x engines named a violated constraint by `target` (P2002 fields) and `field_name`
// (P2003 "<constraint> (index)"); Prisma 7 clients carry the driver adapter's error instead
// (`driverAdapterError.cause.constraint.index`). They are left out of the record (the
// scenarios assert them per generation); `modelName` and the rest are compared.
const GENERATION_META = ['target', 'field_name', 'driverAdapterError']

// An error's meta, as recorded.
function errorMeta(e) {
  if (e.meta == null) return null
  const meta = { ...e.meta }
  for (const k of GENERATION_META) delete meta[k]
  // P2028 `timeTaken` is wall-clock time (and the servers measure it at different moments:
  // Prisma's executor when the late query arrives, tidepool when the timeout fires), so only
  // its relation to `timeout` is recorded.
  if (typeof meta.timeTaken === 'number' && typeof meta.timeout === 'number') {
    meta.timeTaken = meta.timeTaken >= meta.timeout ? '>= timeout' : '< timeout'
  }
  return meta
}

async function main() {
  const { prisma, Prisma, url } = await client()
  const results = { client: version, scenarios: {} }
  let passed = 0
  let failed = 0
  console.log(`prisma client ${version} against ${new URL(url).host}`)
  const s = {}
  for (const sc of scenarios) {
    const norm = makeNormalizer(Prisma)
    const records = []
    const record = (label, value) => {
      records.push([label, norm(value)])
      return value
    }
    // Awaits a promise that must reject with `code`; records and returns the error. With
    // `{ meta: false }` only the code is recorded (meta a client generation does not expose).
    const expectCode = async (label, promise, code, opts = {}) => {
      try {
        record(label, { $unexpectedSuccess: await promise })
      } catch (e) {
        record(label, opts.meta === false ? { $error: { code: e.code ?? null } } : e)
        assert.equal(e.code, code, `expected ${code}, got ${e.code}: ${e.message}`)
        return e
      }
      assert.fail(`expected ${code}, the operation succeeded`)
    }
    let status = 'pass'
    let error
    try {
      await sc.run({ prisma, Prisma, assert, record, expectCode, s, major })
      passed++
      console.log(`ok   ${sc.name}`)
    } catch (e) {
      failed++
      status = 'fail'
      error = String((e && e.message) || e).split('\n')[0]
      console.log(`FAIL ${sc.name}\n     ${String((e && e.stack) || e).split('\n').slice(0, 6).join('\n     ')}`)
    }
    results.scenarios[sc.name] = { status, records, ...(error ? { error } : {}) }
  }
  await prisma.$disconnect()
  if (process.env.RESULTS_OUT) fs.writeFileSync(process.env.RESULTS_OUT, JSON.stringify(results, null, 1) + '\n')
  console.log(`${passed} passed, ${failed} failed`)
  process.exit(failed ? 1 : 0)
}

main().catch((e) => {
  console.error(e)
  process.exit(2)
})
