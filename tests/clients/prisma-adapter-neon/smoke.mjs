// Prisma ORM 7 + @prisma/adapter-neon against tidepool's Postgres-over-WebSocket endpoint:
// CRUD and interactive transactions, every outcome checked through a direct PostgreSQL
// connection as well.
//
//   TIDEPOOL_WS=127.0.0.1:4466 \
//   TIDEPOOL_CONN_STRING=postgresql://alice:secret@127.0.0.1:4466/app \
//   DIRECT_PG_URL=postgresql://postgres@127.0.0.1:5432/app \
//     node --import tsx smoke.mjs          # or: npm test
//
// Env:
//   TIDEPOOL_WS           host:port of tidepool's HTTP listener (WebSocket on /v2, plain ws://)
//   TIDEPOOL_CONN_STRING  what the driver logs in with (tidepool user, password, database)
//   DIRECT_PG_URL         the same database directly; smoke.mjs (re)creates the tables from
//                         schema.sql through it and grants them to the tidepool role
//   SMOKE_TESTS=regex     optional: run only matching tests
//
// Prints one `ok`/`FAIL` line per test, then `N passed, N failed`; exits 1 on any failure.
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import assert from 'node:assert/strict'
import pg from 'pg'
import ws from 'ws'
import { neonConfig } from '@neondatabase/serverless'
import { PrismaNeon } from '@prisma/adapter-neon'
import { PrismaClient, Prisma } from './generated/prisma/client.ts'

const here = path.dirname(fileURLToPath(import.meta.url))
const wsHost = process.env.TIDEPOOL_WS?.replace(/^wss?:\/\//, '').replace(/\/+$/, '')
const connString = process.env.TIDEPOOL_CONN_STRING
const directUrl = process.env.DIRECT_PG_URL
if (!wsHost || !connString || !directUrl) {
  console.error('smoke: TIDEPOOL_WS, TIDEPOOL_CONN_STRING and DIRECT_PG_URL are required')
  process.exit(2)
}

// The driver talks to tidepool the way it talks to Neon's proxy: WebSocket to `${wsProxy}`,
// plain ws:// here, and the default pipelineConnect ("password": startup + cleartext password
// sent without waiting for the server's auth request).
neonConfig.webSocketConstructor = ws // Node 20 has no global WebSocket
neonConfig.wsProxy = (_host) => `${wsHost}/v2`
neonConfig.useSecureWebSocket = false
assert.equal(neonConfig.pipelineConnect, 'password', 'pipelineConnect default changed')

const role = decodeURIComponent(new URL(connString).username)
const ident = (s) => `"${s.replace(/"/g, '""')}"`

const direct = new pg.Client({ connectionString: directUrl })
await direct.connect()
await direct.query(fs.readFileSync(path.join(here, 'schema.sql'), 'utf8'))
await direct.query(
  `GRANT ALL ON TABLE "Author", "Book" TO ${ident(role)};
   GRANT ALL ON SEQUENCE "Author_id_seq", "Book_id_seq" TO ${ident(role)};`,
)

const adapter = new PrismaNeon({ connectionString: connString, max: 4 })
const prisma = new PrismaClient({ adapter })

/** Rows of a table read directly from PostgreSQL (not through tidepool). */
async function directRows(sql, params = []) {
  return (await direct.query(sql, params)).rows
}

const tests = []
const test = (name, fn) => tests.push({ name, fn })

// ---------------------------------------------------------------------------
// CRUD
// ---------------------------------------------------------------------------
test('create with nested create', async () => {
  const a = await prisma.author.create({
    data: {
      email: 'ada@example.com',
      name: 'Ada Lovelace',
      books: { create: [{ title: 'Notes', pages: 66, price: new Prisma.Decimal('12.50') }, { title: 'Letters' }] },
    },
    include: { books: { orderBy: { id: 'asc' } } },
  })
  assert.ok(Number.isInteger(a.id))
  assert.equal(a.name, 'Ada Lovelace')
  assert.ok(a.createdAt instanceof Date && Math.abs(a.createdAt.getTime() - Date.now()) < 10 * 60_000)
  assert.deepEqual(
    a.books.map((b) => [b.title, b.pages, b.price?.toString() ?? null]),
    [['Notes', 66, '12.5'], ['Letters', 0, null]],
  )
  const rows = await directRows('SELECT b.title FROM "Book" b JOIN "Author" a ON a.id = b."authorId" WHERE a.email = $1 ORDER BY b.id', ['ada@example.com'])
  assert.deepEqual(rows.map((r) => r.title), ['Notes', 'Letters'])
})

test('createMany and findMany (where, orderBy, include, select)', async () => {
  const n = await prisma.author.createMany({
    data: [
      { email: 'grace@example.com', name: 'Grace Hopper' },
      { email: 'edsger@example.com', name: 'Edsger Dijkstra' },
      { email: 'barbara@example.com', name: 'Barbara Liskov' },
    ],
  })
  assert.equal(n.count, 3)
  const all = await prisma.author.findMany({ orderBy: { email: 'asc' }, select: { email: true } })
  assert.deepEqual(all.map((a) => a.email), [
    'ada@example.com', 'barbara@example.com', 'edsger@example.com', 'grace@example.com',
  ])
  const withBooks = await prisma.author.findMany({
    where: { books: { some: { pages: { gt: 10 } } } },
    include: { _count: { select: { books: true } } },
  })
  assert.deepEqual(withBooks.map((a) => [a.email, a._count.books]), [['ada@example.com', 2]])
  const page = await prisma.author.findMany({ where: { name: { contains: 'a' } }, orderBy: { id: 'desc' }, skip: 1, take: 2 })
  assert.equal(page.length, 2)
  assert.equal(await prisma.author.count(), 4)
  const one = await prisma.author.findUnique({ where: { email: 'grace@example.com' } })
  assert.equal(one?.name, 'Grace Hopper')
  assert.equal(await prisma.author.findUnique({ where: { email: 'nobody@example.com' } }), null)
})

test('update, updateMany, upsert', async () => {
  const u = await prisma.author.update({ where: { email: 'grace@example.com' }, data: { name: 'Rear Admiral Grace Hopper' } })
  assert.equal(u.name, 'Rear Admiral Grace Hopper')
  const m = await prisma.book.updateMany({ where: { author: { email: 'ada@example.com' } }, data: { pages: { increment: 1 } } })
  assert.equal(m.count, 2)
  const up = await prisma.author.upsert({
    where: { email: 'alan@example.com' },
    create: { email: 'alan@example.com', name: 'Alan Turing' },
    update: { name: 'never' },
  })
  assert.equal(up.name, 'Alan Turing')
  const up2 = await prisma.author.upsert({
    where: { email: 'alan@example.com' },
    create: { email: 'alan@example.com', name: 'never' },
    update: { name: 'A. M. Turing' },
  })
  assert.equal(up2.id, up.id)
  assert.equal(up2.name, 'A. M. Turing')
  assert.deepEqual(
    (await directRows('SELECT name FROM "Author" WHERE email IN ($1, $2) ORDER BY email', ['alan@example.com', 'grace@example.com'])).map((r) => r.name),
    ['A. M. Turing', 'Rear Admiral Grace Hopper'],
  )
  assert.deepEqual((await directRows('SELECT pages FROM "Book" ORDER BY id')).map((r) => r.pages), [67, 1])
})

test('unique violation is P2002 and the client keeps working', async () => {
  await assert.rejects(
    prisma.author.create({ data: { email: 'ada@example.com', name: 'Duplicate' } }),
    (e) => e instanceof Prisma.PrismaClientKnownRequestError && e.code === 'P2002',
  )
  assert.equal(await prisma.author.count(), 5)
})

test('delete, deleteMany (with cascade)', async () => {
  const d = await prisma.author.delete({ where: { email: 'ada@example.com' } })
  assert.equal(d.name, 'Ada Lovelace')
  assert.equal((await directRows('SELECT count(*)::int AS n FROM "Book"'))[0].n, 0, 'books cascade-deleted')
  const dm = await prisma.author.deleteMany({ where: { email: { endsWith: '@example.com' }, name: { startsWith: 'E' } } })
  assert.equal(dm.count, 1)
  await assert.rejects(
    prisma.author.delete({ where: { email: 'ada@example.com' } }),
    (e) => e instanceof Prisma.PrismaClientKnownRequestError && e.code === 'P2025',
  )
  assert.deepEqual((await prisma.author.findMany({ orderBy: { email: 'asc' } })).map((a) => a.email), [
    'alan@example.com', 'barbara@example.com', 'grace@example.com',
  ])
})

test('raw queries with parameters', async () => {
  const rows = await prisma.$queryRaw`SELECT ${41}::int + 1 AS answer, ${'tide'} || 'pool' AS name, now() IS NOT NULL AS ok`
  assert.deepEqual(rows, [{ answer: 42, name: 'tidepool', ok: true }])
  const n = await prisma.$executeRaw`UPDATE "Author" SET name = name WHERE email LIKE ${'%@example.com'}`
  assert.equal(n, 3)
})

// ---------------------------------------------------------------------------
// Interactive transactions
// ---------------------------------------------------------------------------
test('interactive transaction commits', async () => {
  const result = await prisma.$transaction(async (tx) => {
    const a = await tx.author.create({ data: { email: 'tx-commit@example.com', name: 'Committed' } })
    await tx.book.create({ data: { title: 'In a transaction', authorId: a.id } })
    // Read-your-writes inside the transaction, invisible outside until commit.
    assert.equal(await tx.book.count({ where: { authorId: a.id } }), 1)
    const outside = await directRows('SELECT count(*)::int AS n FROM "Author" WHERE email = $1', ['tx-commit@example.com'])
    assert.equal(outside[0].n, 0, 'uncommitted row visible outside the transaction')
    const [{ pid }] = await tx.$queryRaw`SELECT pg_backend_pid() AS pid`
    const [{ pid: pid2 }] = await tx.$queryRaw`SELECT pg_backend_pid() AS pid`
    assert.equal(pid, pid2, 'one transaction, one server connection')
    return a.id
  })
  assert.ok(Number.isInteger(result))
  const rows = await directRows('SELECT a.name, b.title FROM "Author" a JOIN "Book" b ON b."authorId" = a.id WHERE a.id = $1', [result])
  assert.deepEqual(rows, [{ name: 'Committed', title: 'In a transaction' }])
})

test('interactive transaction rolls back when the callback throws', async () => {
  const boom = new Error('boom: roll back')
  let createdId
  await assert.rejects(
    prisma.$transaction(async (tx) => {
      const a = await tx.author.create({ data: { email: 'tx-rollback@example.com', name: 'Rolled back' } })
      createdId = a.id
      await tx.author.update({ where: { email: 'grace@example.com' }, data: { name: 'changed in rolled-back tx' } })
      assert.ok(await tx.author.findUnique({ where: { id: a.id } }))
      throw boom
    }),
    (e) => e === boom,
  )
  assert.ok(Number.isInteger(createdId))
  assert.equal(await prisma.author.findUnique({ where: { id: createdId } }), null)
  assert.equal((await directRows('SELECT count(*)::int AS n FROM "Author" WHERE email = $1', ['tx-rollback@example.com']))[0].n, 0)
  assert.equal((await prisma.author.findUnique({ where: { email: 'grace@example.com' } }))?.name, 'Rear Admiral Grace Hopper')
})

test('interactive transaction rolls back on a database error', async () => {
  await assert.rejects(
    prisma.$transaction(async (tx) => {
      await tx.author.create({ data: { email: 'tx-err@example.com', name: 'Before the error' } })
      await tx.author.create({ data: { email: 'grace@example.com', name: 'Duplicate' } })
    }),
    (e) => e instanceof Prisma.PrismaClientKnownRequestError && e.code === 'P2002',
  )
  assert.equal((await directRows('SELECT count(*)::int AS n FROM "Author" WHERE email = $1', ['tx-err@example.com']))[0].n, 0)
  // The pooled connection that carried the failed transaction is clean again.
  const rows = await prisma.$queryRaw`SELECT current_setting('transaction_isolation') AS iso, 1 AS one`
  assert.deepEqual(rows, [{ iso: 'read committed', one: 1 }])
})

test('interactive transaction with isolation level Serializable', async () => {
  const iso = await prisma.$transaction(
    async (tx) => (await tx.$queryRaw`SELECT current_setting('transaction_isolation') AS iso`)[0].iso,
    { isolationLevel: Prisma.TransactionIsolationLevel.Serializable },
  )
  assert.equal(iso, 'serializable')
})

test('sequential $transaction([...]) commits all or nothing', async () => {
  const [a, b] = await prisma.$transaction([
    prisma.author.create({ data: { email: 'batch1@example.com', name: 'Batch One' } }),
    prisma.author.create({ data: { email: 'batch2@example.com', name: 'Batch Two' } }),
  ])
  assert.equal(b.id, a.id + 1)
  await assert.rejects(
    prisma.$transaction([
      prisma.author.create({ data: { email: 'batch3@example.com', name: 'Batch Three' } }),
      prisma.author.create({ data: { email: 'batch1@example.com', name: 'Duplicate' } }),
    ]),
    (e) => e instanceof Prisma.PrismaClientKnownRequestError && e.code === 'P2002',
  )
  assert.deepEqual(
    (await directRows(`SELECT email FROM "Author" WHERE email LIKE 'batch%' ORDER BY email`)).map((r) => r.email),
    ['batch1@example.com', 'batch2@example.com'],
  )
})

test('concurrent interactive transactions', async () => {
  const ids = await Promise.all(
    [1, 2, 3].map((i) =>
      prisma.$transaction(async (tx) => {
        const a = await tx.author.create({ data: { email: `conc${i}@example.com`, name: `Concurrent ${i}` } })
        await tx.$executeRaw`SELECT pg_sleep(0.05)`
        await tx.book.create({ data: { title: `Book ${i}`, authorId: a.id, pages: i } })
        return a.id
      }),
    ),
  )
  assert.equal(new Set(ids).size, 3)
  const rows = await directRows(
    `SELECT a.email, b.pages FROM "Author" a JOIN "Book" b ON b."authorId" = a.id WHERE a.email LIKE 'conc%' ORDER BY a.email`,
  )
  assert.deepEqual(rows, [
    { email: 'conc1@example.com', pages: 1 },
    { email: 'conc2@example.com', pages: 2 },
    { email: 'conc3@example.com', pages: 3 },
  ])
})

// ---------------------------------------------------------------------------
const only = process.env.SMOKE_TESTS ? new RegExp(process.env.SMOKE_TESTS) : null
const TEST_TIMEOUT_MS = 30_000
let passed = 0
let failed = 0
for (const { name, fn } of tests) {
  if (only && !only.test(name)) continue
  const t0 = Date.now()
  let timer
  try {
    await Promise.race([
      fn(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${TEST_TIMEOUT_MS} ms`)), TEST_TIMEOUT_MS)
      }),
    ])
    console.log(`ok   ${name} (${Date.now() - t0} ms)`)
    passed++
  } catch (e) {
    console.log(`FAIL ${name} (${Date.now() - t0} ms)\n     ${String(e?.stack ?? e).replace(/\n/g, '\n     ')}`)
    failed++
  } finally {
    clearTimeout(timer)
  }
}

await Promise.race([
  Promise.allSettled([prisma.$disconnect(), direct.end()]),
  new Promise((resolve) => setTimeout(resolve, 5_000)),
])
console.log(`${passed} passed, ${failed} failed`)
process.exit(failed === 0 ? 0 : 1)
