// Prisma 5/6 client scenarios against tidepool's DataProxy front end (the client generated with
// `--no-engine`, `@prisma/client/edge` + withAccelerate(), exactly as an Accelerate app uses it).
// Run from the client's directory (tests/clients/prisma5 or prisma6):
//   DATABASE_URL='prisma://localhost:PORT/?api_key=KEY' NODE_EXTRA_CA_CERTS=cert.pem node ../prisma5/suite.cjs
// The tables (../prisma/schema.sql) are created and emptied by the caller. Ends with
// "N passed, N failed".
'use strict'
const path = require('node:path')
const assert = require('node:assert/strict')

// Resolve the packages of the client directory this runs from (prisma5 or prisma6).
const here = require('node:module').createRequire(path.join(process.cwd(), 'package.json'))
const { PrismaClient, Prisma } = here('@prisma/client/edge')
const { withAccelerate } = here('@prisma/extension-accelerate')

const prisma = new PrismaClient({ datasourceUrl: process.env.DATABASE_URL }).$extends(withAccelerate())
const version = here('@prisma/client/package.json').version

const tests = []
const test = (name, fn) => tests.push({ name, fn })

async function expectCode(promise, code) {
  try {
    await promise
  } catch (e) {
    assert.equal(e.code, code, `expected ${code}, got ${e.code}: ${e.message}`)
    return e
  }
  assert.fail(`expected ${code}, the operation succeeded`)
}

let alice
test('create with typed values (Decimal, BigInt, Bytes, Json, DateTime, String[])', async () => {
  alice = await prisma.user.create({
    data: {
      name: 'Alice', email: 'alice@example.com', password: 'secret', role: 'ADMIN',
      nicknames: ['al', 'ali'], profile: { likes: ['tea'], n: 1 },
      balance: new Prisma.Decimal('1234.56'), karma: 9007199254740993n,
      avatar: Buffer.from([1, 2, 3]), birthday: new Date('1990-05-17T00:00:00.000Z'),
    },
  })
  assert.equal(alice.name, 'Alice')
  assert.equal(typeof alice.id, 'number')
  assert.ok(Prisma.Decimal.isDecimal(alice.balance) && alice.balance.toString() === '1234.56')
  assert.equal(alice.karma, 9007199254740993n)
  assert.ok(Buffer.isBuffer(alice.avatar) || alice.avatar instanceof Uint8Array)
  assert.deepEqual([...alice.avatar], [1, 2, 3])
  assert.deepEqual(alice.profile, { likes: ['tea'], n: 1 })
  assert.ok(alice.birthday instanceof Date && alice.birthday.toISOString() === '1990-05-17T00:00:00.000Z')
  assert.ok(alice.createdAt instanceof Date)
  assert.deepEqual(alice.nicknames, ['al', 'ali'])
})

test('findUnique / select / findFirst / findMany with filters, orderBy, take', async () => {
  const u = await prisma.user.findUnique({ where: { email: 'alice@example.com' }, select: { id: true, name: true } })
  assert.deepEqual(u, { id: alice.id, name: 'Alice' })
  await prisma.user.create({ data: { name: 'Bob', email: 'bob@example.com', password: 'x' } })
  await prisma.user.create({ data: { name: 'Bonnie', email: 'bonnie@example.com', password: 'x' } })
  const bs = await prisma.user.findMany({ where: { name: { startsWith: 'Bo' } }, orderBy: { name: 'desc' }, take: 5 })
  assert.deepEqual(bs.map((x) => x.name), ['Bonnie', 'Bob'])
  const f = await prisma.user.findFirst({ where: { OR: [{ email: { contains: 'bob' } }, { karma: { gt: 10n } }] }, orderBy: { id: 'asc' } })
  assert.equal(f.name, 'Alice')
  const none = await prisma.user.findUnique({ where: { email: 'nobody@example.com' } })
  assert.equal(none, null)
})

test('update / upsert / updateMany increment', async () => {
  const u = await prisma.user.update({ where: { id: alice.id }, data: { name: 'Alice2', karma: { increment: 1 } } })
  assert.equal(u.name, 'Alice2')
  assert.equal(u.karma, 9007199254740994n)
  const up = await prisma.user.upsert({ where: { email: 'carol@example.com' }, create: { name: 'Carol', email: 'carol@example.com', password: 'p' }, update: { name: 'no' } })
  assert.equal(up.name, 'Carol')
  const up2 = await prisma.user.upsert({ where: { email: 'carol@example.com' }, create: { name: 'no', email: 'carol@example.com', password: 'p' }, update: { name: 'Carol2' } })
  assert.equal(up2.name, 'Carol2')
  const many = await prisma.user.updateMany({ where: { name: { startsWith: 'Bo' } }, data: { karma: { increment: 5 } } })
  assert.equal(many.count, 2)
})

test('nested create, include, relation filters, _count, relationLoadStrategy join', async () => {
  const u = await prisma.user.create({
    data: { name: 'Dave', email: 'dave@example.com', password: 'p', posts: { create: [{ title: 'p1', published: true, views: 3 }, { title: 'p2', views: 7 }] } },
    include: { posts: { orderBy: { title: 'asc' } } },
  })
  assert.deepEqual(u.posts.map((p) => p.title), ['p1', 'p2'])
  const withPublished = await prisma.user.findMany({ where: { posts: { some: { published: true } } }, select: { name: true, _count: { select: { posts: true } } } })
  assert.deepEqual(withPublished, [{ name: 'Dave', _count: { posts: 2 } }])
  const joined = await prisma.user.findUnique({ where: { id: u.id }, relationLoadStrategy: 'join', include: { posts: { where: { views: { gt: 5 } } } } })
  assert.deepEqual(joined.posts.map((p) => p.title), ['p2'])
  const posts = await prisma.post.findMany({ where: { author: { email: 'dave@example.com' } }, orderBy: { views: 'desc' } })
  assert.deepEqual(posts.map((p) => p.views), [7, 3])
})

test('count, aggregate, groupBy', async () => {
  assert.equal(await prisma.user.count(), 5)
  const agg = await prisma.post.aggregate({ _sum: { views: true }, _avg: { views: true }, _max: { views: true }, _count: { _all: true } })
  assert.deepEqual(agg, { _sum: { views: 10 }, _avg: { views: 5 }, _max: { views: 7 }, _count: { _all: 2 } })
  const g = await prisma.user.groupBy({ by: ['role'], _count: { _all: true }, orderBy: { role: 'asc' } })
  assert.deepEqual(g.map((r) => [r.role, r._count._all]), [['USER', 4], ['ADMIN', 1]])
})

test('$queryRaw with typed parameters, $executeRaw', async () => {
  const rows = await prisma.$queryRaw`SELECT count(*)::int AS n, max(karma) AS k FROM "User" WHERE name LIKE ${'Bo%'}`
  assert.equal(rows[0].n, 2)
  assert.equal(rows[0].k, 5n)
  const at = await prisma.$queryRaw`SELECT ${new Date('2024-01-02T03:04:05.000Z')}::timestamptz AS t, ${10n}::bigint AS b`
  assert.equal(at[0].t.toISOString(), '2024-01-02T03:04:05.000Z')
  assert.equal(at[0].b, 10n)
  const n = await prisma.$executeRaw`UPDATE "User" SET password = ${'changed'} WHERE name LIKE 'Bo%'`
  assert.equal(n, 2)
})

test('batch $transaction([...]) commits all', async () => {
  const [a, b] = await prisma.$transaction([
    prisma.user.create({ data: { name: 'Eve', email: 'eve@example.com', password: 'p' } }),
    prisma.user.update({ where: { email: 'bob@example.com' }, data: { name: 'Bob2' } }),
  ])
  assert.equal(a.name, 'Eve')
  assert.equal(b.name, 'Bob2')
})

test('batch $transaction with isolation level rolls back on P2002', async () => {
  await expectCode(prisma.$transaction([
    prisma.user.create({ data: { name: 'F', email: 'f@example.com', password: 'p' } }),
    prisma.user.create({ data: { name: 'Dup', email: 'alice@example.com', password: 'p' } }),
  ], { isolationLevel: 'Serializable' }), 'P2002')
  assert.equal(await prisma.user.count({ where: { email: 'f@example.com' } }), 0)
})

test('interactive $transaction with isolation level commits', async () => {
  const made = await prisma.$transaction(async (tx) => {
    const u = await tx.user.create({ data: { name: 'Gina', email: 'gina@example.com', password: 'p' } })
    const seen = await tx.user.count({ where: { email: 'gina@example.com' } })
    assert.equal(seen, 1)
    return u
  }, { isolationLevel: 'Serializable' })
  assert.equal(made.name, 'Gina')
  assert.equal(await prisma.user.count({ where: { email: 'gina@example.com' } }), 1)
})

test('interactive $transaction rolls back when the callback throws', async () => {
  await assert.rejects(prisma.$transaction(async (tx) => {
    await tx.user.create({ data: { name: 'Hank', email: 'hank@example.com', password: 'p' } })
    throw new Error('boom')
  }), /boom/)
  assert.equal(await prisma.user.count({ where: { email: 'hank@example.com' } }), 0)
})

test('P2002 unique violation names the field (meta.target)', async () => {
  const e = await expectCode(prisma.user.create({ data: { name: 'x', email: 'alice@example.com', password: 'p' } }), 'P2002')
  assert.ok(e instanceof Prisma.PrismaClientKnownRequestError)
  assert.deepEqual(e.meta.target, ['email'])
})

test('P2003 foreign key violation (meta.field_name)', async () => {
  const e = await expectCode(prisma.post.create({ data: { title: 't', authorId: 999999 } }), 'P2003')
  assert.match(String(e.meta.field_name), /authorId/)
})

test('P2025 record to update not found; findUniqueOrThrow miss', async () => {
  await expectCode(prisma.user.update({ where: { id: 999999 }, data: { name: 'n' } }), 'P2025')
  await expectCode(prisma.user.findUniqueOrThrow({ where: { id: 999999 } }), 'P2025')
})

test('P2028 interactive transaction past its timeout', async () => {
  await expectCode(prisma.$transaction(async (tx) => {
    await new Promise((r) => setTimeout(r, 600))
    await tx.user.count()
  }, { timeout: 200 }), 'P2028')
})

test('dataloader batch (compacted findUnique) and createMany / deleteMany', async () => {
  const [a, none, b] = await Promise.all([
    prisma.user.findUnique({ where: { id: alice.id } }),
    prisma.user.findUnique({ where: { id: 999999 } }),
    prisma.user.findUnique({ where: { email: 'eve@example.com' } }),
  ])
  assert.equal(a.name, 'Alice2')
  assert.equal(none, null)
  assert.equal(b.name, 'Eve')
  const cm = await prisma.tag.createMany({ data: [{ name: 't1' }, { name: 't2' }, { name: 't3' }] })
  assert.equal(cm.count, 3)
  const dm = await prisma.tag.deleteMany({ where: { name: { in: ['t1', 't2'] } } })
  assert.equal(dm.count, 2)
})

test('cacheStrategy query through withAccelerate()', async () => {
  const r = await prisma.user.findMany({ where: { role: 'ADMIN' }, cacheStrategy: { ttl: 60 } })
  assert.deepEqual(r.map((u) => u.name), ['Alice2'])
})

;(async () => {
  let passed = 0
  let failed = 0
  console.log(`prisma client ${version} against ${new URL(process.env.DATABASE_URL).host}`)
  for (const t of tests) {
    try {
      await t.fn()
      passed++
      console.log(`ok   ${t.name}`)
    } catch (e) {
      failed++
      console.log(`FAIL ${t.name}\n     ${String(e && e.stack || e).split('\n').slice(0, 6).join('\n     ')}`)
    }
  }
  await prisma.$disconnect()
  console.log(`${passed} passed, ${failed} failed`)
  process.exit(failed ? 1 : 0)
})()
