// Prisma ORM 7 scenario suite for an Accelerate-compatible server.
//
//   ACCELERATE_URL='prisma+postgres://127.0.0.1:4466/?api_key=KEY' \
//   DATABASE_URL='postgresql://postgres@127.0.0.1:5432/prisma_dev' \
//   RESULTS_OUT=results.json node --import tsx suite.mjs
//
// Env:
//   ACCELERATE_URL      server under test (the Prisma client talks only to it)
//   DATABASE_URL        direct Postgres URL of the database that server uses; the
//                       suite (re)creates the tables from schema.sql and resets
//                       them before every scenario
//   RESULTS_OUT         optional: write every scenario's normalised results here
//                       (compare two runs with `node diff.mjs a.json b.json`)
//   SCENARIOS           optional: regex; run only scenarios whose name matches
//   CAPTURE_CONTROL_URL optional: base URL of capture-proxy.mjs; the suite tags
//                       captured traffic with the current scenario name
//   SUITE_VERBOSE=1     print each scenario's normalised records
//
// Prints one line per scenario and ends with `N passed, N failed`; exits 1 on
// any failure.
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import assert from 'node:assert/strict'
import pg from 'pg'
import { withAccelerate } from '@prisma/extension-accelerate'
import { PrismaClient, Prisma } from './generated/prisma/client.ts'
import { scenarios } from './scenarios.mjs'

const here = path.dirname(fileURLToPath(import.meta.url))
const accelerateUrl = process.env.ACCELERATE_URL
const databaseUrl = process.env.DATABASE_URL
if (!accelerateUrl || !databaseUrl) {
  console.error('suite: ACCELERATE_URL and DATABASE_URL are required')
  process.exit(2)
}

const schemaSql = fs.readFileSync(path.join(here, 'schema.sql'), 'utf8')
const seedSql = fs.readFileSync(path.join(here, 'seed.sql'), 'utf8')
const RESET_SQL = 'TRUNCATE "_PostToTag", "Comment", "Post", "Tag", "User", "Sample" RESTART IDENTITY CASCADE'

// ---------------------------------------------------------------------------
// Normalisation: make results comparable across servers and runs.
// ---------------------------------------------------------------------------
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i
const CUID1_RE = /^c[a-z0-9]{24}$/
const CUID2_RE = /^[a-z][a-z0-9]{23}$/
const NOW_WINDOW_MS = 6 * 60 * 60 * 1000

export function makeNormalizer() {
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
      if (CUID1_RE.test(v)) return placeholder('cuid', v)
      if (CUID2_RE.test(v)) return placeholder('cuid2', v)
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
    if (v instanceof Error) return normError(v, norm)
    if (Array.isArray(v)) return v.map(norm)
    const out = {}
    for (const [k, val] of Object.entries(v)) out[k] = norm(val)
    return out
  }
  return norm
}

// Prisma error messages start with a code frame pointing into this file
// ("Invalid `prisma.user.create()` invocation in /path:line ..."); keep only
// the final paragraph, which is the server's message.
export function errorText(e) {
  const msg = String(e?.message ?? e)
  const parts = msg.split(/\n\s*\n/).map((s) => s.trim()).filter(Boolean)
  return parts.length ? parts[parts.length - 1] : msg.trim()
}

function normError(e, norm) {
  const out = { name: e.name ?? e.constructor?.name }
  if (e.code !== undefined) out.code = e.code
  if (e.meta !== undefined) out.meta = norm(e.meta)
  out.message = errorText(e)
  return { $error: out }
}

// ---------------------------------------------------------------------------
// Runner
// ---------------------------------------------------------------------------
async function main() {
  const db = new pg.Client({ connectionString: databaseUrl })
  await db.connect()
  await db.query('SET client_min_messages = warning')
  await db.query(schemaSql)

  const prisma = new PrismaClient({ accelerateUrl }).$extends(withAccelerate())
  const filter = process.env.SCENARIOS ? new RegExp(process.env.SCENARIOS) : null
  const results = { accelerateUrl: accelerateUrl.replace(/api_key=[^&]*/, 'api_key=***'), scenarios: {} }
  let passed = 0
  let failed = 0
  const failures = []

  for (const sc of scenarios) {
    if (filter && !filter.test(sc.name)) continue
    await db.query(RESET_SQL)
    if (sc.seed) await db.query(seedSql)
    if (process.env.CAPTURE_CONTROL_URL) {
      await fetch(new URL('/__capture/scenario', process.env.CAPTURE_CONTROL_URL), {
        method: 'POST',
        body: JSON.stringify({ name: sc.name, seed: !!sc.seed, description: sc.description ?? null }),
      })
    }
    const norm = makeNormalizer()
    const records = []
    const record = (label, value) => {
      records.push([label, norm(value)])
      return value
    }
    // Runs fn, which must reject; records and returns the error.
    const expectError = async (label, fn) => {
      try {
        const v = await fn()
        record(label, { $unexpectedSuccess: v })
      } catch (e) {
        record(label, e)
        return e
      }
      throw new assert.AssertionError({ message: `${label}: expected an error, got success` })
    }
    const started = Date.now()
    let status = 'pass'
    let error = null
    try {
      await sc.run({ prisma, db, record, expectError, assert, Prisma })
      passed++
    } catch (e) {
      status = 'fail'
      error = e?.stack ?? String(e)
      failed++
      failures.push([sc.name, e])
    }
    const ms = Date.now() - started
    console.log(`${status === 'pass' ? 'ok  ' : 'FAIL'} ${sc.name} (${ms} ms)`)
    if (status === 'fail') console.log('     ' + String(error).split('\n').slice(0, 12).join('\n     '))
    if (process.env.SUITE_VERBOSE) console.log(JSON.stringify(records, null, 1))
    results.scenarios[sc.name] = { status, records, ...(error ? { error: errorText({ message: error.split('\n')[0] }) } : {}) }
  }

  await prisma.$disconnect()
  await db.end()
  if (process.env.RESULTS_OUT) fs.writeFileSync(process.env.RESULTS_OUT, JSON.stringify(results, null, 1) + '\n')
  if (failures.length) {
    console.log('\nfailed scenarios: ' + failures.map(([n]) => n).join(', '))
  }
  console.log(`${passed} passed, ${failed} failed`)
  process.exitCode = failed ? 1 : 0
}

await main()
