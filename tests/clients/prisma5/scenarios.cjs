// The Prisma 5/6 DataProxy scenarios, shared by every client generation that runs them
// (suite.cjs loads Prisma 5.22 / 6.19 `@prisma/client/edge` or the Prisma 7 client generated in
// ../prisma). Each scenario asserts fixed expected values and also `record`s every operation's
// result, so that runs against different servers can be diffed (diff.cjs).
//
// A scenario is `{ name, run(ctx) }`; scenarios run in order on one database and share state
// through `ctx.s`. ctx: { prisma, Prisma, assert, record(label, value) -> value,
// expectCode(label, promise, code) -> error, s }.
'use strict'

const scenarios = []
const test = (name, run) => scenarios.push({ name, run })

test('create with typed values (Decimal, BigInt, Bytes, Json, DateTime, String[])', async ({ prisma, Prisma, assert, record, s }) => {
  const alice = record('create', await prisma.user.create({
    data: {
      name: 'Alice', email: 'alice@example.com', password: 'secret', role: 'ADMIN',
      nicknames: ['al', 'ali'], profile: { likes: ['tea'], n: 1 },
      balance: new Prisma.Decimal('1234.56'), karma: 9007199254740993n,
      avatar: Buffer.from([1, 2, 3]), birthday: new Date('1990-05-17T00:00:00.000Z'),
    },
  }))
  s.alice = alice
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

test('findUnique / select / findFirst / findMany with filters, orderBy, take', async ({ prisma, assert, record, s }) => {
  const u = record('findUnique-select', await prisma.user.findUnique({ where: { email: 'alice@example.com' }, select: { id: true, name: true } }))
  assert.deepEqual(u, { id: s.alice.id, name: 'Alice' })
  record('create-bob', await prisma.user.create({ data: { name: 'Bob', email: 'bob@example.com', password: 'x' } }))
  record('create-bonnie', await prisma.user.create({ data: { name: 'Bonnie', email: 'bonnie@example.com', password: 'x' } }))
  const bs = record('findMany', await prisma.user.findMany({ where: { name: { startsWith: 'Bo' } }, orderBy: { name: 'desc' }, take: 5 }))
  assert.deepEqual(bs.map((x) => x.name), ['Bonnie', 'Bob'])
  const f = record('findFirst', await prisma.user.findFirst({ where: { OR: [{ email: { contains: 'bob' } }, { karma: { gt: 10n } }] }, orderBy: { id: 'asc' } }))
  assert.equal(f.name, 'Alice')
  const none = record('findUnique-miss', await prisma.user.findUnique({ where: { email: 'nobody@example.com' } }))
  assert.equal(none, null)
})

test('update / upsert / updateMany increment', async ({ prisma, assert, record, s }) => {
  const u = record('update', await prisma.user.update({ where: { id: s.alice.id }, data: { name: 'Alice2', karma: { increment: 1 } } }))
  assert.equal(u.name, 'Alice2')
  assert.equal(u.karma, 9007199254740994n)
  const up = record('upsert-create', await prisma.user.upsert({ where: { email: 'carol@example.com' }, create: { name: 'Carol', email: 'carol@example.com', password: 'p' }, update: { name: 'no' } }))
  assert.equal(up.name, 'Carol')
  const up2 = record('upsert-update', await prisma.user.upsert({ where: { email: 'carol@example.com' }, create: { name: 'no', email: 'carol@example.com', password: 'p' }, update: { name: 'Carol2' } }))
  assert.equal(up2.name, 'Carol2')
  const many = record('updateMany', await prisma.user.updateMany({ where: { name: { startsWith: 'Bo' } }, data: { karma: { increment: 5 } } }))
  assert.equal(many.count, 2)
})

test('nested create, include, relation filters, _count, relationLoadStrategy join', async ({ prisma, assert, record }) => {
  const u = record('nested-create-include', await prisma.user.create({
    data: { name: 'Dave', email: 'dave@example.com', password: 'p', posts: { create: [{ title: 'p1', published: true, views: 3 }, { title: 'p2', views: 7 }] } },
    include: { posts: { orderBy: { title: 'asc' } } },
  }))
  assert.deepEqual(u.posts.map((p) => p.title), ['p1', 'p2'])
  const withPublished = record('relation-filter-count', await prisma.user.findMany({ where: { posts: { some: { published: true } } }, select: { name: true, _count: { select: { posts: true } } } }))
  assert.deepEqual(withPublished, [{ name: 'Dave', _count: { posts: 2 } }])
  const joined = record('join', await prisma.user.findUnique({ where: { id: u.id }, relationLoadStrategy: 'join', include: { posts: { where: { views: { gt: 5 } } } } }))
  assert.deepEqual(joined.posts.map((p) => p.title), ['p2'])
  const posts = record('filter-by-author', await prisma.post.findMany({ where: { author: { email: 'dave@example.com' } }, orderBy: { views: 'desc' } }))
  assert.deepEqual(posts.map((p) => p.views), [7, 3])
})

test('count, aggregate, groupBy', async ({ prisma, assert, record }) => {
  assert.equal(record('count', await prisma.user.count()), 5)
  const agg = record('aggregate', await prisma.post.aggregate({ _sum: { views: true }, _avg: { views: true }, _max: { views: true }, _count: { _all: true } }))
  assert.deepEqual(agg, { _sum: { views: 10 }, _avg: { views: 5 }, _max: { views: 7 }, _count: { _all: 2 } })
  const g = record('groupBy', await prisma.user.groupBy({ by: ['role'], _count: { _all: true }, orderBy: { role: 'asc' } }))
  assert.deepEqual(g.map((r) => [r.role, r._count._all]), [['USER', 4], ['ADMIN', 1]])
})

test('$queryRaw with typed parameters, $executeRaw', async ({ prisma, assert, record }) => {
  const rows = record('queryRaw', await prisma.$queryRaw`SELECT count(*)::int AS n, max(karma) AS k FROM "User" WHERE name LIKE ${'Bo%'}`)
  assert.equal(rows[0].n, 2)
  assert.equal(rows[0].k, 5n)
  const at = record('queryRaw-typed-params', await prisma.$queryRaw`SELECT ${new Date('2024-01-02T03:04:05.000Z')}::timestamptz AS t, ${10n}::bigint AS b`)
  assert.equal(at[0].t.toISOString(), '2024-01-02T03:04:05.000Z')
  assert.equal(at[0].b, 10n)
  const n = record('executeRaw', await prisma.$executeRaw`UPDATE "User" SET password = ${'changed'} WHERE name LIKE 'Bo%'`)
  assert.equal(n, 2)
})

test('batch $transaction([...]) commits all', async ({ prisma, assert, record }) => {
  const [a, b] = record('batch', await prisma.$transaction([
    prisma.user.create({ data: { name: 'Eve', email: 'eve@example.com', password: 'p' } }),
    prisma.user.update({ where: { email: 'bob@example.com' }, data: { name: 'Bob2' } }),
  ]))
  assert.equal(a.name, 'Eve')
  assert.equal(b.name, 'Bob2')
})

test('batch $transaction with isolation level rolls back on P2002', async ({ prisma, assert, record, expectCode, major }) => {
  const e = await expectCode('batch-P2002', prisma.$transaction([
    prisma.user.create({ data: { name: 'F', email: 'f@example.com', password: 'p' } }),
    prisma.user.create({ data: { name: 'Dup', email: 'alice@example.com', password: 'p' } }),
  ], { isolationLevel: 'Serializable' }), 'P2002')
  if (major < 7) assert.deepEqual(e.meta.target, ['email'])
  else assert.equal(e.meta.driverAdapterError.cause.constraint.index, 'User_email_key')
  assert.equal(record('count-after', await prisma.user.count({ where: { email: 'f@example.com' } })), 0)
})

test('interactive $transaction with isolation level commits', async ({ prisma, assert, record }) => {
  const made = record('itx', await prisma.$transaction(async (tx) => {
    const u = record('itx-create', await tx.user.create({ data: { name: 'Gina', email: 'gina@example.com', password: 'p' } }))
    const seen = record('itx-count', await tx.user.count({ where: { email: 'gina@example.com' } }))
    assert.equal(seen, 1)
    return u
  }, { isolationLevel: 'Serializable' }))
  assert.equal(made.name, 'Gina')
  assert.equal(record('count-after', await prisma.user.count({ where: { email: 'gina@example.com' } })), 1)
})

test('interactive $transaction rolls back when the callback throws', async ({ prisma, assert, record }) => {
  await assert.rejects(prisma.$transaction(async (tx) => {
    record('itx-create', await tx.user.create({ data: { name: 'Hank', email: 'hank@example.com', password: 'p' } }))
    throw new Error('boom')
  }), /boom/)
  assert.equal(record('count-after', await prisma.user.count({ where: { email: 'hank@example.com' } })), 0)
})

test('P2002 unique violation names the field (meta.target)', async ({ prisma, Prisma, assert, expectCode, major }) => {
  const e = await expectCode('P2002', prisma.user.create({ data: { name: 'x', email: 'alice@example.com', password: 'p' } }), 'P2002')
  assert.ok(e instanceof Prisma.PrismaClientKnownRequestError)
  // The 5.x/6.x engines named the fields in meta.target; Prisma 7 clients report the constraint.
  if (major < 7) assert.deepEqual(e.meta.target, ['email'])
  else assert.equal(e.meta.driverAdapterError.cause.constraint.index, 'User_email_key')
})

test('P2003 foreign key violation (meta.field_name)', async ({ prisma, assert, expectCode, major }) => {
  const e = await expectCode('P2003', prisma.post.create({ data: { title: 't', authorId: 999999 } }), 'P2003')
  if (major < 7) assert.match(String(e.meta.field_name), /authorId/)
  else assert.equal(e.meta.driverAdapterError.cause.constraint.index, 'Post_authorId_fkey')
})

test('P2025 record to update not found; findUniqueOrThrow miss', async ({ prisma, assert, expectCode, major }) => {
  await expectCode('update-miss', prisma.user.update({ where: { id: 999999 }, data: { name: 'n' } }), 'P2025')
  // The 5.x client rethrows a P2025 of an *OrThrow method as its own NotFoundError, without the
  // server's meta: only the code is comparable across generations.
  const e = await expectCode('findUniqueOrThrow-miss', prisma.user.findUniqueOrThrow({ where: { id: 999999 } }), 'P2025', { meta: false })
  if (major < 6) assert.equal(e.name, 'NotFoundError')
  else assert.deepEqual(e.meta, { modelName: 'User', operation: 'a query' })
})

test('P2028 interactive transaction past its timeout', async ({ prisma, expectCode }) => {
  await expectCode('itx-timeout', prisma.$transaction(async (tx) => {
    await new Promise((r) => setTimeout(r, 600))
    await tx.user.count()
  }, { timeout: 200 }), 'P2028')
})

test('dataloader batch (compacted findUnique) and createMany / deleteMany', async ({ prisma, assert, record, s }) => {
  const [a, none, b] = record('compacted', await Promise.all([
    prisma.user.findUnique({ where: { id: s.alice.id } }),
    prisma.user.findUnique({ where: { id: 999999 } }),
    prisma.user.findUnique({ where: { email: 'eve@example.com' } }),
  ]))
  assert.equal(a.name, 'Alice2')
  assert.equal(none, null)
  assert.equal(b.name, 'Eve')
  const cm = record('createMany', await prisma.tag.createMany({ data: [{ name: 't1' }, { name: 't2' }, { name: 't3' }] }))
  assert.equal(cm.count, 3)
  const dm = record('deleteMany', await prisma.tag.deleteMany({ where: { name: { in: ['t1', 't2'] } } }))
  assert.equal(dm.count, 2)
})

test('cacheStrategy query through withAccelerate()', async ({ prisma, assert, record }) => {
  const r = record('cached-findMany', await prisma.user.findMany({ where: { role: 'ADMIN' }, cacheStrategy: { ttl: 60 } }))
  assert.deepEqual(r.map((u) => u.name), ['Alice2'])
})

module.exports = { scenarios }
