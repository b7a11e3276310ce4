// The query cache through an unmodified Prisma 7 client with `withAccelerate()`:
// `cacheStrategy {ttl, swr, tags}`, `.withAccelerateInfo()` and `$accelerate.invalidate()`.
//
//   ACCELERATE_URL='prisma+postgres://127.0.0.1:4466/?api_key=KEY' \
//   DATABASE_URL='postgresql://postgres@127.0.0.1:5432/db' \
//     node --import tsx cache.mjs
//
// DATABASE_URL is the same database, used directly to change rows behind the cache's back.
// Prints one ok/FAIL line per check, then `N passed, N failed`; exits 1 on any failure.
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import assert from 'node:assert/strict'
import pg from 'pg'
import { withAccelerate } from '@prisma/extension-accelerate'
import { PrismaClient, Prisma } from './generated/prisma/client.ts'

const here = path.dirname(fileURLToPath(import.meta.url))
const accelerateUrl = process.env.ACCELERATE_URL
const databaseUrl = process.env.DATABASE_URL
if (!accelerateUrl || !databaseUrl) {
  console.error('cache: ACCELERATE_URL and DATABASE_URL are required')
  process.exit(2)
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const db = new pg.Client({ connectionString: databaseUrl })
await db.connect()
await db.query('SET client_min_messages = warning')
await db.query(fs.readFileSync(path.join(here, 'schema.sql'), 'utf8'))
await db.query(`INSERT INTO "User" (name, email, password, balance, karma, avatar, birthday, profile, nicknames, "updatedAt")
  VALUES ('Alice', 'alice@example.com', 'pw', 12345.67, 9007199254740993, '\\xdeadbeef', '1990-05-17', '{"a":[1,"x",null],"n":1.5}', '{al,ali}', now()),
         ('Bob', 'bob@example.com', 'pw', NULL, 0, NULL, NULL, NULL, '{}', now())`)

const prisma = new PrismaClient({ accelerateUrl }).$extends(withAccelerate())

let passed = 0
let failed = 0
async function check(name, fn) {
  try {
    await fn()
    passed++
    console.log(`ok   ${name}`)
  } catch (e) {
    failed++
    console.log(`FAIL ${name}\n     ${String(e?.stack ?? e).split('\n').slice(0, 6).join('\n     ')}`)
  }
}

const byEmail = (email, cacheStrategy) => prisma.user.findMany({ where: { email }, select: { id: true, name: true }, cacheStrategy }).withAccelerateInfo()

/** Polls `fn` (every 100 ms, at most `tries` times) until it returns a truthy value. */
async function until(tries, fn) {
  for (let i = 0; i < tries; i++) {
    const v = await fn()
    if (v) return v
    await sleep(100)
  }
  throw new Error('condition never held')
}

await check('no cacheStrategy: none', async () => {
  const { data, info } = await byEmail('alice@example.com', undefined)
  assert.equal(info.cacheStatus, 'none')
  assert.equal(data[0].name, 'Alice')
  assert.notEqual(info.requestId, 'unspecified')
  assert.equal(info.region, 'TIDEPOOL')
})

await check('miss -> ttl -> swr (stale data) -> refreshed ttl', async () => {
  const s = { ttl: 1, swr: 60, tags: ['users'] }
  const first = await byEmail('alice@example.com', s)
  assert.equal(first.info.cacheStatus, 'miss')
  assert.ok(first.info.lastModified instanceof Date && !Number.isNaN(first.info.lastModified.getTime()), 'lastModified is a date')
  const hit = await byEmail('alice@example.com', s)
  assert.equal(hit.info.cacheStatus, 'ttl')
  assert.deepEqual(hit.data, first.data)
  assert.equal(hit.info.lastModified.getTime(), first.info.lastModified.getTime())
  await db.query(`UPDATE "User" SET name = 'Alice2' WHERE email = 'alice@example.com'`)
  assert.equal((await byEmail('alice@example.com', s)).data[0].name, 'Alice', 'invisible during ttl')
  await sleep(1100)
  const stale = await byEmail('alice@example.com', s)
  assert.equal(stale.info.cacheStatus, 'swr')
  assert.equal(stale.data[0].name, 'Alice', 'swr serves the stale result')
  await until(50, async () => {
    const r = await byEmail('alice@example.com', s)
    return r.info.cacheStatus === 'ttl' && r.data[0].name === 'Alice2'
  })
})

await check('a change is visible after ttl + swr', async () => {
  const s = { ttl: 1, swr: 1 }
  assert.equal((await byEmail('bob@example.com', s)).info.cacheStatus, 'miss')
  await db.query(`UPDATE "User" SET name = 'Bob2' WHERE email = 'bob@example.com'`)
  const during = await byEmail('bob@example.com', s)
  assert.equal(during.info.cacheStatus, 'ttl')
  assert.equal(during.data[0].name, 'Bob')
  await sleep(2100)
  const after = await byEmail('bob@example.com', s)
  assert.equal(after.info.cacheStatus, 'miss')
  assert.equal(after.data[0].name, 'Bob2')
})

await check('$accelerate.invalidate({tags}) -> next read is a miss', async () => {
  const tagged = { ttl: 600, tags: ['tag_a'] }
  const other = { ttl: 600, tags: ['tag_b'] }
  await byEmail('alice@example.com', tagged)
  await prisma.user.count({ cacheStrategy: other })
  assert.equal((await byEmail('alice@example.com', tagged)).info.cacheStatus, 'ttl')
  const r = await prisma.$accelerate.invalidate({ tags: ['tag_a'] })
  assert.ok(r.requestId && r.requestId !== 'unspecified', 'requestId from cf-ray')
  assert.equal((await byEmail('alice@example.com', tagged)).info.cacheStatus, 'miss')
  assert.equal((await prisma.user.count({ cacheStrategy: other }).withAccelerateInfo()).info.cacheStatus, 'ttl', 'other tags untouched')
})

await check('$accelerate.invalidateAll()', async () => {
  if (typeof prisma.$accelerate.invalidateAll !== 'function') {
    // Extension versions without invalidateAll: the same request by hand.
    await prisma.$accelerate.invalidate({ tags: 'all' })
  } else {
    await prisma.$accelerate.invalidateAll()
  }
  const r = await prisma.user.count({ cacheStrategy: { ttl: 600, tags: ['tag_b'] } }).withAccelerateInfo()
  assert.equal(r.info.cacheStatus, 'miss')
  assert.equal(r.data, 2)
})

await check('invalid tags are refused by the server', async () => {
  await assert.rejects(prisma.$accelerate.invalidate({ tags: ['not-valid'] }), /400/)
  await assert.rejects(prisma.user.findMany({ cacheStrategy: { ttl: 60, tags: ['a', 'b', 'c', 'd', 'e', 'f'] } }), (e) => e.code === 'P6005')
})

await check('different parameters are different entries', async () => {
  const s = { ttl: 600 }
  const [a, b] = [await prisma.user.findUnique({ where: { id: 1 }, cacheStrategy: s }).withAccelerateInfo(), await prisma.user.findUnique({ where: { id: 2 }, cacheStrategy: s }).withAccelerateInfo()]
  assert.equal(a.info.cacheStatus, 'miss')
  assert.equal(b.info.cacheStatus, 'miss')
  const [a2, b2] = [await prisma.user.findUnique({ where: { id: 1 }, cacheStrategy: s }).withAccelerateInfo(), await prisma.user.findUnique({ where: { id: 2 }, cacheStrategy: s }).withAccelerateInfo()]
  assert.deepEqual([a2.info.cacheStatus, b2.info.cacheStatus], ['ttl', 'ttl'])
  assert.equal(a2.data.id, 1)
  assert.equal(b2.data.id, 2)
})

await check('typed values survive the cache (BigInt, Decimal, Date, Bytes, Json)', async () => {
  const q = () => prisma.user.findUnique({ where: { id: 1 }, select: { karma: true, balance: true, birthday: true, avatar: true, profile: true, nicknames: true, createdAt: true }, cacheStrategy: { ttl: 600, tags: ['typed'] } }).withAccelerateInfo()
  await prisma.$accelerate.invalidate({ tags: ['typed'] })
  const miss = await q()
  const hit = await q()
  assert.equal(miss.info.cacheStatus, 'miss')
  assert.equal(hit.info.cacheStatus, 'ttl')
  for (const r of [miss.data, hit.data]) {
    assert.equal(typeof r.karma, 'bigint')
    assert.equal(r.karma, 9007199254740993n)
    assert.ok(Prisma.Decimal.isDecimal(r.balance))
    assert.equal(r.balance.toString(), '12345.67')
    assert.ok(r.birthday instanceof Date)
    assert.equal(r.birthday.toISOString(), '1990-05-17T00:00:00.000Z')
    assert.ok(r.avatar instanceof Uint8Array)
    assert.equal(Buffer.from(r.avatar).toString('hex'), 'deadbeef')
    assert.deepEqual(r.profile, { a: [1, 'x', null], n: 1.5 })
    assert.deepEqual(r.nicknames, ['al', 'ali'])
  }
  assert.equal(hit.data.createdAt.getTime(), miss.data.createdAt.getTime())
})

await check('relation reads (query and join strategies), count and aggregate are cached', async () => {
  await db.query(`INSERT INTO "Post" (id, title, "authorId", views) VALUES ('p1', 'Hello', 1, 3), ('p2', 'World', 1, 5)`)
  const reads = [
    () => prisma.user.findMany({ where: { id: 1 }, relationLoadStrategy: 'query', include: { posts: { orderBy: { id: 'asc' } } }, cacheStrategy: { ttl: 600 } }),
    () => prisma.user.findMany({ where: { id: 1 }, relationLoadStrategy: 'join', include: { posts: { orderBy: { id: 'asc' } } }, cacheStrategy: { ttl: 600 } }),
    () => prisma.user.findFirst({ where: { id: 1 }, select: { _count: { select: { posts: true } } }, cacheStrategy: { ttl: 600 } }),
    () => prisma.post.aggregate({ _sum: { views: true }, _max: { title: true }, cacheStrategy: { ttl: 600 } }),
    () => prisma.post.groupBy({ by: ['authorId'], _count: { _all: true }, cacheStrategy: { ttl: 600 } }),
  ]
  for (const [i, read] of reads.entries()) {
    const first = await read().withAccelerateInfo()
    const second = await read().withAccelerateInfo()
    assert.deepEqual([first.info.cacheStatus, second.info.cacheStatus], ['miss', 'ttl'], `read #${i}`)
    assert.deepEqual(second.data, first.data, `read #${i}`)
  }
})

await check('writes and interactive transactions are never cached', async () => {
  const s = { ttl: 600 }
  const outside = await prisma.user.findMany({ where: { id: 2 }, select: { name: true }, cacheStrategy: s }).withAccelerateInfo()
  assert.ok(['miss', 'ttl'].includes(outside.info.cacheStatus))
  const seen = await prisma
    .$transaction(async (tx) => {
      await tx.user.update({ where: { id: 2 }, data: { name: 'in-tx' } })
      const inside = await tx.user.findMany({ where: { id: 2 }, select: { name: true }, cacheStrategy: s })
      throw Object.assign(new Error('rollback'), { inside })
    })
    .catch((e) => e.inside)
  assert.deepEqual(seen, [{ name: 'in-tx' }], 'the transaction sees its own write, not the cached row')
  const after = await prisma.user.findMany({ where: { id: 2 }, select: { name: true }, cacheStrategy: s }).withAccelerateInfo()
  assert.equal(after.info.cacheStatus, 'ttl')
  assert.deepEqual(after.data, outside.data)
  // A write with the extension's headers still runs (and is never served from the cache).
  const u1 = await prisma.user.update({ where: { id: 2 }, data: { karma: { increment: 1 } } })
  const u2 = await prisma.user.update({ where: { id: 2 }, data: { karma: { increment: 1 } } })
  assert.equal(u2.karma, u1.karma + 1n)
})

await prisma.$disconnect()
await db.end()
console.log(`${passed} passed, ${failed} failed`)
process.exit(failed ? 1 : 0)
