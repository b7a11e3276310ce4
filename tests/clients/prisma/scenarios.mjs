// Scenarios for suite.mjs. Each scenario runs against a freshly truncated
// database (identities restarted); `seed: true` loads seed.sql first.
// `record(label, value)` stores a normalised result for differential runs;
// assertions make the scenario pass or fail on its own.

const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const ids = (rows) => rows.map((r) => r.id)

export const scenarios = []
const scenario = (name, opts, run) => {
  if (typeof opts === 'function') [run, opts] = [opts, {}]
  scenarios.push({ name, ...opts, run })
}
const seeded = { seed: true }

// ---------------------------------------------------------------------------
// CRUD
// ---------------------------------------------------------------------------
scenario('crud/create-minimal', async ({ prisma, record, assert }) => {
  const u = record('create', await prisma.user.create({ data: { name: 'Alice', email: 'alice@example.com', password: 'secret' } }))
  assert.equal(u.id, 1)
  assert.equal(u.role, 'USER')
  assert.equal(u.karma, 0n)
  assert.deepEqual(u.nicknames, [])
  assert.equal(u.profile, null)
  assert.ok(u.createdAt instanceof Date)
  assert.ok(u.updatedAt instanceof Date)
})

scenario('crud/create-all-scalars', async ({ prisma, record, assert, Prisma }) => {
  const u = record('create', await prisma.user.create({
    data: {
      name: 'Zoë "quoted" \\ back', email: 'z@example.com', password: 'p', role: 'MODERATOR',
      nicknames: ['z', 'zed', 'with,comma', 'with "quote"', ''],
      profile: { a: 1, b: [true, null, 'x'], c: { d: 1.5 } },
      balance: new Prisma.Decimal('1234.56'), karma: 1234567890123456789n,
      avatar: new Uint8Array([0, 1, 2, 253, 254, 255]), birthday: new Date('2000-02-29T00:00:00Z'),
    },
  }))
  assert.equal(u.name, 'Zoë "quoted" \\ back')
  assert.deepEqual(u.nicknames, ['z', 'zed', 'with,comma', 'with "quote"', ''])
  assert.deepEqual(u.profile, { a: 1, b: [true, null, 'x'], c: { d: 1.5 } })
  assert.equal(u.balance.toString(), '1234.56')
  assert.equal(u.karma, 1234567890123456789n)
  assert.deepEqual([...u.avatar], [0, 1, 2, 253, 254, 255])
  assert.equal(u.birthday.toISOString(), '2000-02-29T00:00:00.000Z')
})

scenario('crud/find-unique', seeded, async ({ prisma, record, assert }) => {
  const a = record('by-id', await prisma.user.findUnique({ where: { id: 1 } }))
  assert.equal(a.email, 'alice@example.com')
  const b = record('by-email-select', await prisma.user.findUnique({ where: { email: 'bob@example.com' }, select: { id: true, name: true } }))
  assert.deepEqual(b, { id: 2, name: 'Bob' })
  const c = record('compound-unique', await prisma.post.findUnique({ where: { authorId_title: { authorId: 1, title: 'Second post' } }, select: { id: true } }))
  assert.deepEqual(c, { id: 'p2' })
  const miss = record('miss', await prisma.user.findUnique({ where: { id: 999 } }))
  assert.equal(miss, null)
  const extra = record('unique-plus-filter', await prisma.user.findUnique({ where: { id: 1, name: 'Nobody' } }))
  assert.equal(extra, null)
})

scenario('crud/find-first-and-many', seeded, async ({ prisma, record, assert }) => {
  const f = record('first', await prisma.post.findFirst({ where: { published: true }, orderBy: { views: 'asc' } }))
  assert.equal(f.id, 'p3')
  const all = record('many', await prisma.post.findMany({ orderBy: { id: 'asc' } }))
  assert.deepEqual(ids(all), ['p1', 'p2', 'p3', 'p4', 'p5'])
  const none = record('first-none', await prisma.post.findFirst({ where: { title: 'nope' } }))
  assert.equal(none, null)
})

scenario('crud/or-throw', seeded, async ({ prisma, record, expectError, assert }) => {
  record('found', await prisma.user.findUniqueOrThrow({ where: { id: 2 }, select: { name: true } }))
  const e1 = await expectError('findUniqueOrThrow-miss', () => prisma.user.findUniqueOrThrow({ where: { id: 999 } }))
  assert.equal(e1.code, 'P2025')
  const e2 = await expectError('findFirstOrThrow-miss', () => prisma.post.findFirstOrThrow({ where: { views: { gt: 100000 } } }))
  assert.equal(e2.code, 'P2025')
})

scenario('crud/update', seeded, async ({ prisma, record, assert, Prisma }) => {
  const u = record('update', await prisma.user.update({ where: { id: 2 }, data: { name: 'Robert', role: 'ADMIN' } }))
  assert.equal(u.name, 'Robert')
  assert.ok(u.updatedAt > new Date('2024-06-01'))
  const atomic = record('atomic', await prisma.post.update({
    where: { id: 'p1' },
    data: { views: { increment: 5 }, rating: { multiply: 2 }, content: null, keywords: { push: 'orm' } },
  }))
  assert.equal(atomic.views, 105)
  assert.equal(atomic.rating, 9)
  assert.deepEqual(atomic.keywords, ['prisma', 'postgres', 'orm'])
  const dec = record('decrement-divide', await prisma.user.update({ where: { id: 1 }, data: { karma: { decrement: 3n }, balance: { divide: 2 } }, select: { karma: true, balance: true } }))
  assert.equal(dec.karma, 9007199254740990n)
  assert.equal(dec.balance.toString(), '50.25')
  const nulls = record('json-null', await prisma.user.update({ where: { id: 3 }, data: { profile: Prisma.DbNull }, select: { profile: true } }))
  assert.equal(nulls.profile, null)
  const jsonNull = record('json-jsonnull', await prisma.post.update({ where: { id: 'p2' }, data: { metadata: Prisma.JsonNull }, select: { metadata: true } }))
  assert.equal(jsonNull.metadata, null)
})

scenario('crud/update-many', seeded, async ({ prisma, record, assert }) => {
  const r = record('updateMany', await prisma.post.updateMany({ where: { published: false }, data: { views: { increment: 1 } } }))
  assert.deepEqual(r, { count: 2 })
  const r2 = record('updateMany-none', await prisma.post.updateMany({ where: { title: 'nope' }, data: { views: 0 } }))
  assert.deepEqual(r2, { count: 0 })
  const r3 = record('updateManyAndReturn', await prisma.post.updateManyAndReturn({ where: { authorId: 2 }, data: { status: 'ARCHIVED' }, select: { id: true, status: true } }))
  assert.deepEqual(r3.map((p) => p.id).sort(), ['p3', 'p4'])
  assert.ok(r3.every((p) => p.status === 'ARCHIVED'))
})

scenario('crud/delete', seeded, async ({ prisma, record, assert, expectError }) => {
  const d = record('delete', await prisma.comment.delete({ where: { id: 'c6' } }))
  assert.equal(d.body, 'Typo here')
  const dm = record('deleteMany', await prisma.comment.deleteMany({ where: { likes: { lt: 2 } } }))
  assert.deepEqual(dm, { count: 2 })
  const left = record('remaining', await prisma.comment.findMany({ orderBy: { id: 'asc' }, select: { id: true } }))
  assert.deepEqual(ids(left), ['c1', 'c4', 'c5'])
  const e = await expectError('delete-missing', () => prisma.comment.delete({ where: { id: 'c6' } }))
  assert.equal(e.code, 'P2025')
})

scenario('crud/upsert', seeded, async ({ prisma, record, assert }) => {
  const ins = record('upsert-insert', await prisma.tag.upsert({ where: { name: 'new' }, create: { name: 'new' }, update: {} }))
  assert.equal(ins.id, 5)
  const upd = record('upsert-update', await prisma.user.upsert({
    where: { email: 'bob@example.com' },
    create: { name: 'X', email: 'bob@example.com', password: 'x' },
    update: { name: 'Bobby' },
    select: { id: true, name: true },
  }))
  assert.deepEqual(upd, { id: 2, name: 'Bobby' })
  const nested = record('upsert-with-include', await prisma.post.upsert({
    where: { id: 'p9' },
    create: { id: 'p9', title: 'Upserted', author: { connect: { id: 3 } } },
    update: { title: 'never' },
    include: { author: { select: { name: true } } },
  }))
  assert.equal(nested.author.name, 'Carol')
})

scenario('crud/count', seeded, async ({ prisma, record, assert }) => {
  assert.equal(record('count', await prisma.user.count()), 4)
  assert.equal(record('count-where', await prisma.post.count({ where: { published: true } })), 3)
  const sel = record('count-select', await prisma.post.count({ select: { _all: true, content: true, rating: true } }))
  assert.deepEqual(sel, { _all: 5, content: 4, rating: 3 })
  assert.equal(record('count-take', await prisma.post.count({ take: 2, orderBy: { id: 'asc' } })), 2)
})

// ---------------------------------------------------------------------------
// Filters
// ---------------------------------------------------------------------------
const q = (prisma, where, extra = {}) => prisma.post.findMany({ where, orderBy: { id: 'asc' }, select: { id: true }, ...extra })

scenario('filter/scalar', seeded, async ({ prisma, record, assert }) => {
  const cases = {
    equals: [{ title: { equals: 'Hello World' } }, ['p1']],
    shorthand: [{ title: 'Bob writes' }, ['p3']],
    in: [{ id: { in: ['p1', 'p3', 'zzz'] } }, ['p1', 'p3']],
    'in-empty': [{ id: { in: [] } }, []],
    notIn: [{ id: { notIn: ['p1', 'p3'] } }, ['p2', 'p4', 'p5']],
    'notIn-empty': [{ id: { notIn: [] } }, ['p1', 'p2', 'p3', 'p4', 'p5']],
    lt: [{ views: { lt: 50 } }, ['p2', 'p4']],
    lte: [{ views: { lte: 50 } }, ['p2', 'p3', 'p4']],
    gt: [{ views: { gt: 50 } }, ['p1', 'p5']],
    gte: [{ views: { gte: 75 } }, ['p1', 'p5']],
    'gt-lt-range': [{ views: { gt: 1, lt: 100 } }, ['p2', 'p3', 'p5']],
    contains: [{ content: { contains: 'Post' } }, ['p5']],
    'contains-percent': [{ content: { contains: '100%' } }, ['p5']],
    startsWith: [{ title: { startsWith: 'B' } }, ['p3']],
    endsWith: [{ title: { endsWith: 'post' } }, ['p2']],
    'insensitive-contains': [{ title: { contains: 'BOB', mode: 'insensitive' } }, ['p3', 'p4']],
    'insensitive-equals': [{ title: { equals: 'hello world', mode: 'insensitive' } }, ['p1']],
    'insensitive-startsWith': [{ title: { startsWith: 'c', mode: 'insensitive' } }, ['p5']],
    not: [{ title: { not: 'Hello World' } }, ['p2', 'p3', 'p4', 'p5']],
    'not-nested': [{ views: { not: { gt: 5 } } }, ['p2', 'p4']],
    'not-contains': [{ title: { not: { contains: 'o' } } }, []],
    'null': [{ content: null }, ['p2']],
    'not-null': [{ rating: { not: null } }, ['p1', 'p3', 'p5']],
    'bool': [{ published: false }, ['p2', 'p4']],
    'enum-in': [{ status: { in: ['PUBLISHED', 'ARCHIVED'] } }, ['p1', 'p3', 'p5']],
    'enum-not': [{ status: { not: 'DRAFT' } }, ['p1', 'p3', 'p5']],
    'float-gte': [{ rating: { gte: 4.5 } }, ['p1', 'p5']],
    'datetime-gte': [{ createdAt: { gte: new Date('2024-02-03T09:00:00Z') } }, ['p3', 'p4', 'p5']],
    'datetime-lt-string': [{ createdAt: { lt: '2024-02-02T09:00:00.000Z' } }, ['p1']],
    'fk': [{ authorId: { in: [2, 3] } }, ['p3', 'p4', 'p5']],
  }
  for (const [label, [where, expected]] of Object.entries(cases)) {
    const got = ids(record(label, await q(prisma, where)))
    assert.deepEqual(got, expected, label)
  }
  const users = {
    'decimal-gt': [{ balance: { gt: 20 } }, [1]],
    'decimal-lte-string': [{ balance: { lte: '20.00' } }, [2, 4]],
    'bigint-gt': [{ karma: { gt: 9007199254740992n } }, [1]],
    'bigint-lt': [{ karma: { lt: 0n } }, [4]],
    'date-only': [{ birthday: { lt: new Date('1989-01-01') } }, [2]],
    'email-insensitive-endsWith': [{ email: { endsWith: 'EXAMPLE.COM', mode: 'insensitive' } }, [1, 2, 4]],
    'name-in-insensitive': [{ name: { in: ['ALICE', 'dave'], mode: 'insensitive' } }, [1, 4]],
  }
  for (const [label, [where, expected]] of Object.entries(users)) {
    const got = ids(record(label, await prisma.user.findMany({ where, orderBy: { id: 'asc' }, select: { id: true } })))
    assert.deepEqual(got, expected, label)
  }
})

scenario('filter/logical', seeded, async ({ prisma, record, assert }) => {
  const cases = {
    AND: [{ AND: [{ published: true }, { views: { gt: 60 } }] }, ['p1', 'p5']],
    'AND-empty': [{ AND: [] }, ['p1', 'p2', 'p3', 'p4', 'p5']],
    OR: [{ OR: [{ title: { startsWith: 'Hello' } }, { views: 0 }] }, ['p1', 'p4']],
    'OR-empty': [{ OR: [] }, []],
    NOT: [{ NOT: { published: true } }, ['p2', 'p4']],
    'NOT-list': [{ NOT: [{ published: true }, { views: 0 }] }, ['p2']],
    'NOT-empty': [{ NOT: [] }, ['p1', 'p2', 'p3', 'p4', 'p5']],
    nested: [{ OR: [{ AND: [{ authorId: 1 }, { published: false }] }, { NOT: { OR: [{ authorId: 1 }, { authorId: 2 }] } }] }, ['p2', 'p5']],
    implicit: [{ authorId: 2, published: true }, ['p3']],
  }
  for (const [label, [where, expected]] of Object.entries(cases)) {
    assert.deepEqual(ids(record(label, await q(prisma, where))), expected, label)
  }
})

scenario('filter/relation', seeded, async ({ prisma, record, assert }) => {
  const uq = (where) => prisma.user.findMany({ where, orderBy: { id: 'asc' }, select: { id: true } })
  const users = {
    some: [{ posts: { some: { published: true } } }, [1, 2, 3]],
    'some-empty': [{ posts: { some: {} } }, [1, 2, 3]],
    every: [{ posts: { every: { published: true } } }, [3, 4]],
    none: [{ posts: { none: {} } }, [4]],
    'none-where': [{ posts: { none: { views: { gt: 60 } } } }, [2, 4]],
    'two-level-some': [{ posts: { some: { comments: { some: { likes: { gte: 10 } } } } } }, [3]],
    'three-level': [{ posts: { some: { comments: { some: { author: { is: { name: 'Bob' } } } } } } }, [1]],
    'm2m-some': [{ posts: { some: { tags: { some: { name: 'rust' } } } } }, [3]],
    'comments-none': [{ comments: { none: {} } }, [4]],
  }
  for (const [label, [where, expected]] of Object.entries(users)) {
    assert.deepEqual(ids(record(label, await uq(where))), expected, label)
  }
  const posts = {
    is: [{ author: { is: { role: 'ADMIN' } } }, ['p1', 'p2']],
    'is-shorthand': [{ author: { name: 'Bob' } }, ['p3', 'p4']],
    isNot: [{ author: { isNot: { name: 'Alice' } } }, ['p3', 'p4', 'p5']],
    'tags-every': [{ tags: { every: { name: { in: ['prisma', 'postgres'] } } } }, ['p1', 'p2', 'p3', 'p4']],
    'tags-none': [{ tags: { none: {} } }, ['p4']],
  }
  for (const [label, [where, expected]] of Object.entries(posts)) {
    assert.deepEqual(ids(record(label, await q(prisma, where))), expected, label)
  }
  const cq = (where) => prisma.comment.findMany({ where, orderBy: { id: 'asc' }, select: { id: true } })
  assert.deepEqual(ids(record('optional-is-null', await cq({ author: { is: null } }))), ['c4'])
  assert.deepEqual(ids(record('optional-isNot-null', await cq({ author: { isNot: null } }))), ['c1', 'c2', 'c3', 'c5', 'c6'])
  assert.deepEqual(ids(record('fk-null', await cq({ authorId: null }))), ['c4'])
})

scenario('filter/json', seeded, async ({ prisma, record, assert, Prisma }) => {
  const cases = {
    'path-equals': [{ metadata: { path: ['lang'], equals: 'en' } }, ['p1', 'p3', 'p5']],
    'path-nested': [{ metadata: { path: ['extra', 'k'], equals: 'v' } }, ['p5']],
    'path-number-gt': [{ metadata: { path: ['score'], gt: 5 } }, ['p1', 'p5']],
    'path-string-contains': [{ metadata: { path: ['lang'], string_contains: 'f' } }, ['p2']],
    'path-string-starts': [{ metadata: { path: ['lang'], string_starts_with: 'e' } }, ['p1', 'p3', 'p5']],
    'path-array-contains': [{ metadata: { path: ['tags'], array_contains: ['hello'] } }, ['p1']],
    'equals-whole': [{ metadata: { equals: { lang: 'fr', score: 3 } } }, ['p2']],
    'not-whole': [{ metadata: { not: { lang: 'fr', score: 3 } } }, ['p1', 'p3', 'p5']],
    'db-null': [{ metadata: { equals: Prisma.DbNull } }, ['p4']],
    'any-null': [{ metadata: { equals: Prisma.AnyNull } }, ['p4']],
    'path-bool': [{ metadata: { path: ['draft'], equals: false } }, ['p3']],
  }
  for (const [label, [where, expected]] of Object.entries(cases)) {
    assert.deepEqual(ids(record(label, await q(prisma, where))), expected, label)
  }
  const u = await prisma.user.findMany({ where: { profile: { path: ['city'], string_contains: 'aris', mode: 'insensitive' } }, orderBy: { id: 'asc' }, select: { id: true } })
  assert.deepEqual(ids(record('user-insensitive-path', u)), [1, 3])
})

scenario('filter/scalar-list', seeded, async ({ prisma, record, assert }) => {
  const cases = {
    has: [{ keywords: { has: 'postgres' } }, ['p1', 'p5']],
    hasEvery: [{ keywords: { hasEvery: ['prisma', 'postgres'] } }, ['p1']],
    hasSome: [{ keywords: { hasSome: ['rust', 'prisma'] } }, ['p1', 'p2', 'p5']],
    isEmpty: [{ keywords: { isEmpty: true } }, ['p3']],
    'isEmpty-false': [{ keywords: { isEmpty: false } }, ['p1', 'p2', 'p5']],
    equals: [{ keywords: { equals: ['prisma'] } }, ['p2']],
    'null-list': [{ keywords: { equals: null } }, ['p4']],
  }
  for (const [label, [where, expected]] of Object.entries(cases)) {
    assert.deepEqual(ids(record(label, await q(prisma, where))), expected, label)
  }
  const s = await prisma.sample.findMany({ where: { roles: { has: 'ADMIN' }, ints: { hasEvery: [1, 3] } }, select: { id: true } })
  assert.deepEqual(ids(record('enum-and-int-lists', s)), ['s1'])
})

// ---------------------------------------------------------------------------
// Ordering, pagination, distinct
// ---------------------------------------------------------------------------
scenario('paging/order-skip-take-cursor', seeded, async ({ prisma, record, assert }) => {
  const sel = { select: { id: true } }
  assert.deepEqual(ids(record('order-desc', await prisma.post.findMany({ orderBy: { views: 'desc' }, ...sel }))), ['p1', 'p5', 'p3', 'p2', 'p4'])
  assert.deepEqual(ids(record('order-multi', await prisma.post.findMany({ orderBy: [{ authorId: 'desc' }, { title: 'asc' }], ...sel }))), ['p5', 'p3', 'p4', 'p1', 'p2'])
  assert.deepEqual(ids(record('nulls-first', await prisma.post.findMany({ orderBy: [{ rating: { sort: 'asc', nulls: 'first' } }, { id: 'asc' }], ...sel }))), ['p2', 'p4', 'p3', 'p1', 'p5'])
  assert.deepEqual(ids(record('nulls-last-desc', await prisma.post.findMany({ orderBy: [{ rating: { sort: 'desc', nulls: 'last' } }, { id: 'asc' }], ...sel }))), ['p5', 'p1', 'p3', 'p2', 'p4'])
  assert.deepEqual(ids(record('order-relation-field', await prisma.post.findMany({ orderBy: [{ author: { name: 'desc' } }, { id: 'asc' }], ...sel }))), ['p5', 'p3', 'p4', 'p1', 'p2'])
  assert.deepEqual(ids(record('order-relation-count', await prisma.user.findMany({ orderBy: [{ posts: { _count: 'desc' } }, { id: 'asc' }], select: { id: true } }))), [1, 2, 3, 4])
  assert.deepEqual(ids(record('skip-take', await prisma.post.findMany({ orderBy: { id: 'asc' }, skip: 1, take: 2, ...sel }))), ['p2', 'p3'])
  assert.deepEqual(ids(record('take-negative', await prisma.post.findMany({ orderBy: { id: 'asc' }, take: -2, ...sel }))), ['p4', 'p5'])
  assert.deepEqual(ids(record('cursor', await prisma.post.findMany({ orderBy: { id: 'asc' }, cursor: { id: 'p2' }, take: 2, ...sel }))), ['p2', 'p3'])
  assert.deepEqual(ids(record('cursor-skip1', await prisma.post.findMany({ orderBy: { id: 'asc' }, cursor: { id: 'p2' }, skip: 1, take: 2, ...sel }))), ['p3', 'p4'])
  assert.deepEqual(ids(record('cursor-backwards', await prisma.post.findMany({ orderBy: { id: 'asc' }, cursor: { id: 'p4' }, take: -2, ...sel }))), ['p3', 'p4'])
  assert.deepEqual(ids(record('cursor-missing', await prisma.post.findMany({ orderBy: { id: 'asc' }, cursor: { id: 'nope' }, take: 2, ...sel }))), [])
  assert.deepEqual(ids(record('cursor-on-views', await prisma.post.findMany({ orderBy: [{ views: 'asc' }, { id: 'asc' }], cursor: { id: 'p3' }, ...sel }))), ['p3', 'p5', 'p1'])
  assert.deepEqual(ids(record('skip-beyond', await prisma.post.findMany({ skip: 10, ...sel }))), [])
})

scenario('paging/distinct', seeded, async ({ prisma, record, assert }) => {
  const d1 = record('distinct-author', await prisma.post.findMany({ distinct: ['authorId'], orderBy: [{ authorId: 'asc' }, { id: 'asc' }], select: { authorId: true, id: true } }))
  assert.deepEqual(d1, [{ authorId: 1, id: 'p1' }, { authorId: 2, id: 'p3' }, { authorId: 3, id: 'p5' }])
  const d2 = record('distinct-multi', await prisma.post.findMany({ distinct: ['published', 'status'], orderBy: { id: 'asc' }, select: { id: true } }))
  assert.deepEqual(ids(d2), ['p1', 'p2', 'p5'])
  const d3 = record('distinct-take', await prisma.comment.findMany({ distinct: ['postId'], orderBy: { id: 'desc' }, take: 2, select: { id: true } }))
  assert.deepEqual(ids(d3), ['c6', 'c5'])
})

// ---------------------------------------------------------------------------
// select / include
// ---------------------------------------------------------------------------
const deepInclude = {
  posts: {
    orderBy: { id: 'asc' },
    include: {
      comments: { orderBy: { id: 'asc' }, include: { author: { select: { id: true, name: true } } } },
      tags: { orderBy: { name: 'asc' } },
    },
  },
}

for (const strategy of ['join', 'query']) {
  scenario(`include/three-levels-${strategy}`, seeded, async ({ prisma, record, assert }) => {
    const users = record('include', await prisma.user.findMany({ relationLoadStrategy: strategy, orderBy: { id: 'asc' }, include: deepInclude }))
    assert.equal(users.length, 4)
    assert.deepEqual(users[0].posts.map((p) => p.id), ['p1', 'p2'])
    assert.deepEqual(users[0].posts[0].comments.map((c) => [c.id, c.author?.name]), [['c1', 'Bob'], ['c2', 'Carol']])
    assert.deepEqual(users[0].posts[0].tags.map((t) => t.name), ['postgres', 'prisma'])
    assert.deepEqual(users[3].posts, [])
    assert.equal(users[2].posts[0].comments[0].author, null)
    assert.equal(typeof users[0].karma, 'bigint')
    assert.ok(users[0].posts[0].createdAt instanceof Date)

    const sel = record('select', await prisma.post.findUnique({
      relationLoadStrategy: strategy,
      where: { id: 'p1' },
      select: {
        title: true,
        author: { select: { name: true, comments: { select: { body: true, post: { select: { title: true } } }, orderBy: { id: 'asc' } } } },
        comments: { where: { likes: { gt: 1 } }, select: { body: true, author: { select: { email: true, posts: { select: { id: true }, orderBy: { id: 'asc' } } } } } },
        _count: { select: { comments: true, tags: true } },
      },
    }))
    assert.deepEqual(sel.author.comments, [{ body: 'Good one', post: { title: 'Bob writes' } }, { body: 'Rust!', post: { title: 'Carol on Rust' } }])
    assert.deepEqual(sel.comments, [{ body: 'Nice post', author: { email: 'bob@example.com', posts: [{ id: 'p3' }, { id: 'p4' }] } }])
    assert.deepEqual(sel._count, { comments: 2, tags: 2 })

    const nested = record('nested-paging', await prisma.user.findMany({
      relationLoadStrategy: strategy,
      where: { id: { in: [1, 2, 3] } },
      orderBy: { id: 'asc' },
      select: {
        id: true,
        posts: { orderBy: { views: 'desc' }, take: 1, select: { id: true, views: true } },
        comments: { orderBy: { id: 'asc' }, skip: 1, select: { id: true } },
        _count: { select: { posts: { where: { published: true } } } },
      },
    }))
    assert.deepEqual(nested.map((u) => u.posts.map((p) => p.id)), [['p1'], ['p3'], ['p5']])
    assert.deepEqual(nested.map((u) => u.comments.map((c) => c.id)), [['c5'], ['c6'], []])
    assert.deepEqual(nested.map((u) => u._count.posts), [1, 1, 1])

    const toOne = record('to-one-from-child', await prisma.comment.findMany({
      relationLoadStrategy: strategy,
      orderBy: { id: 'asc' },
      select: { id: true, post: { select: { id: true, author: { select: { name: true, role: true } } } }, author: true },
    }))
    assert.deepEqual(toOne.map((c) => c.post.author.name), ['Alice', 'Alice', 'Bob', 'Carol', 'Carol', 'Alice'])
    assert.equal(toOne[3].author, null)

    const omit = record('omit', await prisma.user.findUnique({ relationLoadStrategy: strategy, where: { id: 2 }, omit: { password: true, avatar: true }, include: { _count: true } }))
    assert.equal(omit.password, undefined)
    assert.deepEqual(omit._count, { posts: 2, comments: 2 })
  })
}

scenario('include/strategies-agree', seeded, async ({ prisma, record, assert }) => {
  const args = { orderBy: { id: 'asc' }, include: deepInclude }
  const a = await prisma.user.findMany({ ...args, relationLoadStrategy: 'join' })
  const b = await prisma.user.findMany({ ...args, relationLoadStrategy: 'query' })
  record('join', a)
  const toJson = (v) => JSON.stringify(v, (_, x) => (typeof x === 'bigint' ? x.toString() : x))
  assert.equal(toJson(a), toJson(b))
})

// ---------------------------------------------------------------------------
// Nested writes
// ---------------------------------------------------------------------------
scenario('nested/create-three-levels', seeded, async ({ prisma, record, assert }) => {
  const u = record('create', await prisma.user.create({
    data: {
      name: 'Eve', email: 'eve@example.com', password: 'pw',
      posts: {
        create: [
          {
            title: 'Eve first', keywords: ['a'],
            comments: { create: [{ body: 'self-comment', author: { connect: { id: 1 } } }, { body: 'anon' }] },
            tags: { connect: [{ name: 'prisma' }], create: [{ name: 'eve-tag' }] },
          },
          { title: 'Eve second' },
        ],
      },
    },
    include: { posts: { orderBy: { title: 'asc' }, include: { comments: { orderBy: { body: 'asc' } }, tags: { orderBy: { name: 'asc' } } } } },
  }))
  assert.equal(u.posts.length, 2)
  assert.deepEqual(u.posts[0].comments.map((c) => c.body), ['anon', 'self-comment'])
  assert.deepEqual(u.posts[0].tags.map((t) => t.name), ['eve-tag', 'prisma'])
  assert.match(u.posts[0].id, /^[0-9a-f-]{36}$/)
  assert.match(u.posts[0].comments[0].id, /^c[a-z0-9]{24}$/)
})

scenario('nested/connect-connectOrCreate', seeded, async ({ prisma, record, assert }) => {
  const p = record('create-connect', await prisma.post.create({
    data: {
      id: 'p10', title: 'Connected', author: { connect: { email: 'carol@example.org' } },
      tags: { connectOrCreate: [{ where: { name: 'rust' }, create: { name: 'rust' } }, { where: { name: 'brand-new' }, create: { name: 'brand-new' } }] },
    },
    include: { author: { select: { id: true } }, tags: { orderBy: { name: 'asc' } } },
  }))
  assert.equal(p.author.id, 3)
  assert.deepEqual(p.tags.map((t) => [t.id, t.name]), [[5, 'brand-new'], [3, 'rust']])
  const c = record('comment-connect', await prisma.comment.create({ data: { id: 'c10', body: 'hi', post: { connect: { id: 'p10' } }, author: { connectOrCreate: { where: { email: 'new@example.com' }, create: { name: 'New', email: 'new@example.com', password: 'x' } } } }, include: { author: true } }))
  assert.equal(c.author.id, 5)
})

scenario('nested/update-relations', seeded, async ({ prisma, record, assert }) => {
  const p1 = record('set-tags', await prisma.post.update({ where: { id: 'p1' }, data: { tags: { set: [{ id: 3 }, { id: 4 }] } }, include: { tags: { orderBy: { id: 'asc' } } } }))
  assert.deepEqual(p1.tags.map((t) => t.id), [3, 4])
  const p2 = record('disconnect-tag', await prisma.post.update({ where: { id: 'p5' }, data: { tags: { disconnect: [{ id: 2 }] } }, include: { tags: true } }))
  assert.deepEqual(p2.tags.map((t) => t.id), [3])
  const c = record('disconnect-optional', await prisma.comment.update({ where: { id: 'c1' }, data: { author: { disconnect: true } }, include: { author: true } }))
  assert.equal(c.author, null)
  const u = record('nested-update', await prisma.user.update({
    where: { id: 1 },
    data: {
      posts: {
        update: { where: { id: 'p1' }, data: { title: 'Hello again', comments: { updateMany: { where: {}, data: { likes: { increment: 1 } } } } } },
        updateMany: { where: { published: false }, data: { views: 999 } },
        upsert: { where: { id: 'p11' }, create: { id: 'p11', title: 'upserted child' }, update: { title: 'nope' } },
      },
    },
    include: { posts: { orderBy: { id: 'asc' }, include: { comments: { orderBy: { id: 'asc' }, select: { id: true, likes: true } } } } },
  }))
  assert.deepEqual(u.posts.map((p) => [p.id, p.title, p.views]), [['p1', 'Hello again', 100], ['p11', 'upserted child', 0], ['p2', 'Second post', 999]])
  assert.deepEqual(u.posts[0].comments, [{ id: 'c1', likes: 4 }, { id: 'c2', likes: 2 }])
  const d = record('nested-delete', await prisma.post.update({ where: { id: 'p5' }, data: { comments: { delete: [{ id: 'c4' }], deleteMany: { likes: { gt: 100 } } } }, include: { comments: true } }))
  assert.deepEqual(d.comments.map((x) => x.id), ['c5'])
  const m = record('move-post', await prisma.post.update({ where: { id: 'p4' }, data: { author: { connect: { id: 4 } } }, select: { author: { select: { name: true } } } }))
  assert.equal(m.author.name, 'dave')
  const cm = record('nested-createMany', await prisma.user.update({ where: { id: 4 }, data: { posts: { createMany: { data: [{ id: 'p20', title: 'a' }, { id: 'p21', title: 'b' }] } } }, select: { posts: { select: { id: true }, orderBy: { id: 'asc' } } } }))
  assert.deepEqual(ids(cm.posts), ['p20', 'p21', 'p4'])
})

// ---------------------------------------------------------------------------
// Bulk
// ---------------------------------------------------------------------------
scenario('bulk/createMany', seeded, async ({ prisma, record, assert }) => {
  const r = record('createMany', await prisma.tag.createMany({ data: [{ name: 'x' }, { name: 'y' }, { name: 'z' }] }))
  assert.deepEqual(r, { count: 3 })
  const r2 = record('skipDuplicates', await prisma.tag.createMany({ data: [{ name: 'x' }, { name: 'w' }], skipDuplicates: true }))
  assert.deepEqual(r2, { count: 1 })
  const r3 = record('createManyAndReturn', await prisma.user.createManyAndReturn({
    data: [{ name: 'U1', email: 'u1@x.io', password: 'a', nicknames: ['one'] }, { name: 'U2', email: 'u2@x.io', password: 'b', role: 'ADMIN', karma: 5n }],
    select: { id: true, name: true, role: true, karma: true, nicknames: true },
  }))
  assert.deepEqual(r3.map((u) => u.id), [5, 6])
  const r4 = record('createManyAndReturn-include', await prisma.post.createManyAndReturn({ data: [{ id: 'q1', title: 't1', authorId: 5 }, { id: 'q2', title: 't2', authorId: 6 }], include: { author: { select: { email: true } } } }))
  assert.deepEqual(r4.map((p) => p.author.email), ['u1@x.io', 'u2@x.io'])
  const uuids = record('default-uuid-cuid', await prisma.comment.createManyAndReturn({ data: [{ body: 'a', postId: 'q1' }, { body: 'b', postId: 'q2' }], select: { id: true, body: true } }))
  assert.equal(new Set(uuids.map((c) => c.id)).size, 2)
})

// ---------------------------------------------------------------------------
// Aggregation
// ---------------------------------------------------------------------------
scenario('aggregate/aggregate-groupBy', seeded, async ({ prisma, record, assert }) => {
  const a = record('aggregate', await prisma.post.aggregate({
    _count: { _all: true, rating: true }, _sum: { views: true, rating: true }, _avg: { views: true, rating: true },
    _min: { views: true, title: true, createdAt: true }, _max: { views: true, rating: true, status: true },
  }))
  assert.equal(a._count._all, 5)
  assert.equal(a._sum.views, 230)
  assert.equal(a._avg.views, 46)
  assert.equal(a._min.title, 'Bob writes')
  const dec = record('aggregate-decimal-bigint', await prisma.user.aggregate({ _sum: { balance: true, karma: true }, _avg: { balance: true }, _max: { karma: true }, where: { id: { in: [1, 2, 4] } } }))
  assert.equal(dec._sum.balance.toString(), '115.25')
  assert.equal(dec._max.karma, 9007199254740993n)
  const empty = record('aggregate-empty', await prisma.post.aggregate({ where: { id: 'none' }, _sum: { views: true }, _count: true, _avg: { rating: true } }))
  assert.equal(empty._sum.views, null)
  assert.equal(empty._count, 0)
  const g = record('groupBy', await prisma.post.groupBy({ by: ['authorId'], _count: { _all: true }, _sum: { views: true }, orderBy: { authorId: 'asc' } }))
  assert.deepEqual(g.map((x) => [x.authorId, x._count._all, x._sum.views]), [[1, 2, 105], [2, 2, 50], [3, 1, 75]])
  const h = record('groupBy-having', await prisma.post.groupBy({ by: ['published', 'status'], _avg: { views: true }, having: { views: { _avg: { gt: 10 } } }, orderBy: [{ published: 'asc' }, { status: 'asc' }] }))
  assert.deepEqual(h.map((x) => [x.published, x.status]), [[true, 'PUBLISHED'], [true, 'ARCHIVED']])
  const gw = record('groupBy-where-take', await prisma.comment.groupBy({ by: ['postId'], where: { likes: { gte: 1 } }, _max: { likes: true }, orderBy: { _max: { likes: 'desc' } }, take: 1 }))
  assert.deepEqual(gw, [{ postId: 'p5', _max: { likes: 10 } }])
  const cnt = record('relation-count', await prisma.user.findMany({ orderBy: { id: 'asc' }, select: { name: true, _count: { select: { posts: true, comments: true } } } }))
  assert.deepEqual(cnt.map((u) => [u._count.posts, u._count.comments]), [[2, 2], [2, 2], [1, 1], [0, 0]])
})

// ---------------------------------------------------------------------------
// Type round trips
// ---------------------------------------------------------------------------
scenario('types/round-trip', async ({ prisma, record, assert, Prisma }) => {
  const data = {
    kind: 'MODERATOR', day: new Date('2024-02-29T00:00:00Z'), at: new Date('2024-03-10T12:34:56.789Z'),
    amount: new Prisma.Decimal('-98765432109876.543210'), counter: -9007199254740993n,
    doc: { z: 1, a: [1, 'two', null, { deep: true }], s: 'line\nbreak "quoted" \u00e9 \u{1F600}' },
    data: [1, 2.5, 'x', false, null, { n: -0.001 }],
    blob: Buffer.from('hello\u0000world', 'utf8'), floats: [0, -1.5, 3.25e10], ints: [2147483647, -2147483648, 0],
    flags: [true, false, true], roles: ['ADMIN', 'MODERATOR'], note: 'ünïcödé',
  }
  const created = record('create', await prisma.sample.create({ data }))
  assert.match(created.id, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-/)
  assert.match(created.slug, /^[a-z][a-z0-9]{23}$/)
  const read = record('read', await prisma.sample.findUnique({ where: { id: created.id } }))
  assert.equal(read.kind, 'MODERATOR')
  assert.equal(read.day.toISOString(), '2024-02-29T00:00:00.000Z')
  assert.equal(read.at.toISOString(), '2024-03-10T12:34:56.789Z')
  assert.equal(read.amount.toString(), '-98765432109876.54321')
  assert.equal(read.counter, -9007199254740993n)
  assert.deepEqual(read.doc, data.doc)
  assert.deepEqual(read.data, data.data)
  assert.equal(Buffer.from(read.blob).toString('utf8'), 'hello\u0000world')
  assert.deepEqual(read.floats, [0, -1.5, 3.25e10])
  assert.deepEqual(read.ints, [2147483647, -2147483648, 0])
  assert.deepEqual(read.flags, [true, false, true])
  assert.deepEqual(read.roles, ['ADMIN', 'MODERATOR'])
  const upd = record('update-lists', await prisma.sample.update({ where: { id: created.id }, data: { roles: { push: 'USER' }, ints: { set: [] }, note: null, kind: 'USER' } }))
  assert.deepEqual(upd.roles, ['ADMIN', 'MODERATOR', 'USER'])
  assert.deepEqual(upd.ints, [])
  const byDecimal = record('filter-decimal', await prisma.sample.findMany({ where: { amount: { lt: new Prisma.Decimal('-1') }, counter: { lt: 0n } }, select: { slug: true } }))
  assert.equal(byDecimal.length, 1)
  const byBytes = record('filter-bytes', await prisma.sample.findMany({ where: { blob: { equals: Buffer.from('hello\u0000world') } }, select: { note: true } }))
  assert.equal(byBytes.length, 1)
  const byDate = record('filter-date', await prisma.sample.count({ where: { day: new Date('2024-02-29T00:00:00Z'), at: { gt: new Date('2024-03-10T12:34:56.788Z') } } }))
  assert.equal(byDate, 1)
})

scenario('types/seeded-values', seeded, async ({ prisma, record, assert }) => {
  const s = record('samples', await prisma.sample.findMany({ orderBy: { id: 'asc' } }))
  assert.equal(s[0].at.toISOString(), '2024-05-06T07:08:09.123Z')
  assert.equal(s[0].amount.toString(), '12345.678901')
  assert.equal(s[0].counter, -9223372036854775808n)
  assert.deepEqual(s[0].doc, { b: 2, a: 1 })
  assert.deepEqual(s[0].data, { k: [1, 2, { x: null }], s: 'é"q' })
  assert.deepEqual([...s[0].blob], [0, 255, 16])
  assert.equal(s[1].counter, 9223372036854775807n)
  assert.equal(s[1].amount.toString(), '0.000001')
  assert.deepEqual(s[1].doc, [])
  assert.equal(s[1].data, null)
  assert.equal(s[1].blob.length, 0)
  const u = record('users', await prisma.user.findMany({ orderBy: { id: 'asc' }, select: { balance: true, karma: true, avatar: true, birthday: true, createdAt: true, nicknames: true, profile: true } }))
  assert.equal(u[0].balance.toString(), '100.5')
  assert.equal(u[3].createdAt.toISOString(), '2024-01-04T10:00:00.123Z')
  assert.deepEqual(u[3].nicknames, [])
})

// ---------------------------------------------------------------------------
// Raw queries
// ---------------------------------------------------------------------------
scenario('raw/queryRaw-executeRaw', seeded, async ({ prisma, record, assert, Prisma }) => {
  const r1 = record('queryRaw', await prisma.$queryRaw`SELECT id, name, email FROM "User" WHERE id <= ${2} ORDER BY id`)
  assert.deepEqual(r1, [{ id: 1, name: 'Alice', email: 'alice@example.com' }, { id: 2, name: 'Bob', email: 'bob@example.com' }])
  const r2 = record('queryRaw-types', await prisma.$queryRaw`SELECT 1::int AS i, 2::bigint AS b, 1.5::float8 AS f, 3.25::numeric AS n, true AS t, 'x'::text AS s,
    '2024-01-02T03:04:05.678Z'::timestamptz AS ts, '2024-01-02'::date AS d, '{"a":1}'::jsonb AS j, '\\x0102'::bytea AS by,
    ARRAY[1,2]::int[] AS ia, ARRAY['a','b'] AS sa, NULL::text AS nul, gen_random_uuid() IS NOT NULL AS u`)
  const row = r2[0]
  assert.equal(row.i, 1)
  assert.equal(row.b, 2n)
  assert.equal(row.f, 1.5)
  assert.equal(row.n.toString(), '3.25')
  assert.equal(row.ts.toISOString(), '2024-01-02T03:04:05.678Z')
  assert.deepEqual(row.j, { a: 1 })
  assert.deepEqual([...row.by], [1, 2])
  assert.deepEqual(row.ia, [1, 2])
  const r3 = record('queryRaw-params', await prisma.$queryRaw`SELECT ${1.5}::float8 AS a, ${'txt'} AS b, ${10n}::bigint AS c, ${new Date('2020-01-01T00:00:00Z')}::timestamptz AS d, ${true} AS e, ${new Prisma.Decimal('1.10')}::numeric AS f, ${Buffer.from([9])}::bytea AS g`)
  assert.equal(r3[0].c, 10n)
  const sql = Prisma.sql`SELECT count(*)::int AS n FROM "Post" WHERE "authorId" IN (${Prisma.join([1, 2])})`
  assert.equal(record('queryRaw-join', await prisma.$queryRaw(sql))[0].n, 4)
  const n = record('executeRaw', await prisma.$executeRaw`UPDATE "Post" SET views = views + ${1} WHERE published = ${true}`)
  assert.equal(n, 3)
  const u = record('queryRawUnsafe', await prisma.$queryRawUnsafe('SELECT title FROM "Post" WHERE id = $1', 'p2'))
  assert.deepEqual(u, [{ title: 'Second post' }])
  assert.equal(record('executeRawUnsafe', await prisma.$executeRawUnsafe('DELETE FROM "Comment" WHERE likes = $1', 0)), 2)
})

scenario('raw/errors', seeded, async ({ expectError, prisma, assert }) => {
  const e = await expectError('syntax', () => prisma.$queryRaw`SELEC 1`)
  assert.equal(e.code, 'P2010')
  const e2 = await expectError('unique-in-raw', () => prisma.$executeRaw`INSERT INTO "Tag" (name) VALUES ('prisma')`)
  assert.equal(e2.code, 'P2010')
})

// ---------------------------------------------------------------------------
// Transactions
// ---------------------------------------------------------------------------
scenario('tx/batch', seeded, async ({ prisma, record, assert }) => {
  const [a, b, c] = record('batch', await prisma.$transaction([
    prisma.user.update({ where: { id: 1 }, data: { name: 'A2' } }),
    prisma.post.count(),
    prisma.tag.create({ data: { name: 'batched' } }),
  ]))
  assert.equal(a.name, 'A2')
  assert.equal(b, 5)
  assert.equal(c.id, 5)
  const uniques = record('batch-findUnique-compacted', await prisma.$transaction([
    prisma.user.findUnique({ where: { id: 1 }, select: { name: true } }),
    prisma.user.findUnique({ where: { id: 2 }, select: { name: true } }),
    prisma.user.findUnique({ where: { id: 99 }, select: { name: true } }),
  ]))
  assert.deepEqual(uniques, [{ name: 'A2' }, { name: 'Bob' }, null])
  // A one-statement batch is sent as a plain /query (no transaction), so the
  // isolation level only shows with two or more statements.
  const iso1 = record('batch-isolation-single', await prisma.$transaction([prisma.$queryRaw`SHOW transaction_isolation`], { isolationLevel: 'RepeatableRead' }))
  assert.deepEqual(iso1, [[{ transaction_isolation: 'read committed' }]])
  const iso = record('batch-isolation', await prisma.$transaction([prisma.$queryRaw`SHOW transaction_isolation`, prisma.$queryRaw`SELECT 1 AS one`], { isolationLevel: 'RepeatableRead' }))
  assert.deepEqual(iso, [[{ transaction_isolation: 'repeatable read' }], [{ one: 1 }]])
})

scenario('tx/batch-rollback', seeded, async ({ prisma, record, expectError, assert }) => {
  const e = await expectError('batch-fails', () => prisma.$transaction([
    prisma.tag.create({ data: { name: 'will-vanish' } }),
    prisma.tag.create({ data: { name: 'prisma' } }),
  ]))
  assert.equal(e.code, 'P2002')
  assert.equal(record('after', await prisma.tag.count({ where: { name: 'will-vanish' } })), 0)
})

scenario('tx/interactive-commit', seeded, async ({ prisma, record, assert }) => {
  const out = record('result', await prisma.$transaction(async (tx) => {
    const u = await tx.user.create({ data: { name: 'Tx', email: 'tx@example.com', password: 'p' } })
    await tx.post.create({ data: { id: 'tx1', title: 'in tx', authorId: u.id } })
    const n = await tx.post.count({ where: { authorId: u.id } })
    const raw = await tx.$queryRaw`SELECT count(*)::int AS n FROM "User"`
    return { id: u.id, n, raw }
  }))
  assert.deepEqual(out, { id: 5, n: 1, raw: [{ n: 5 }] })
  assert.equal(record('visible-after', await prisma.post.count({ where: { id: 'tx1' } })), 1)
})

scenario('tx/interactive-rollback', seeded, async ({ prisma, record, assert }) => {
  let caught
  try {
    await prisma.$transaction(async (tx) => {
      await tx.user.create({ data: { name: 'Gone', email: 'gone@example.com', password: 'p' } })
      await tx.tag.deleteMany({})
      throw new Error('boom')
    })
  } catch (e) {
    caught = e
  }
  record('error', caught.message)
  assert.equal(caught.message, 'boom')
  assert.equal(record('user-count', await prisma.user.count()), 4)
  assert.equal(record('tag-count', await prisma.tag.count()), 4)
  const e2 = await (async () => {
    try {
      await prisma.$transaction(async (tx) => {
        await tx.tag.create({ data: { name: 'first' } })
        await tx.tag.create({ data: { name: 'first' } })
      })
    } catch (e) {
      return e
    }
  })()
  record('error-in-tx', e2)
  assert.equal(e2.code, 'P2002')
  assert.equal(record('tag-count-2', await prisma.tag.count()), 4)
})

scenario('tx/interactive-timeout', seeded, async ({ prisma, record, assert }) => {
  let caught
  try {
    await prisma.$transaction(async (tx) => {
      await tx.tag.create({ data: { name: 'slow' } })
      await sleep(1500)
      await tx.tag.create({ data: { name: 'slower' } })
    }, { timeout: 500, maxWait: 2000 })
  } catch (e) {
    caught = e
  }
  assert.ok(caught, 'expected a timeout error')
  record('error', { name: caught.name, code: caught.code })
  assert.equal(caught.code, 'P2028')
  assert.equal(record('tag-count', await prisma.tag.count()), 4)
})

scenario('tx/isolation-levels', seeded, async ({ prisma, record, assert }) => {
  for (const [level, pgName] of [['ReadUncommitted', 'read uncommitted'], ['ReadCommitted', 'read committed'], ['RepeatableRead', 'repeatable read'], ['Serializable', 'serializable']]) {
    const r = await prisma.$transaction(async (tx) => tx.$queryRaw`SHOW transaction_isolation`, { isolationLevel: level, timeout: 3000, maxWait: 1000 })
    record(level, r)
    assert.deepEqual(r, [{ transaction_isolation: pgName }])
  }
  const dflt = await prisma.$transaction(async (tx) => tx.$queryRaw`SHOW transaction_isolation`)
  assert.deepEqual(record('default', dflt), [{ transaction_isolation: 'read committed' }])
})

scenario('tx/interactive-sees-own-writes', seeded, async ({ prisma, db, record, assert }) => {
  await prisma.$transaction(async (tx) => {
    await tx.tag.update({ where: { id: 4 }, data: { name: 'renamed' } })
    const inside = await tx.tag.findUnique({ where: { id: 4 } })
    record('inside', inside)
    assert.equal(inside.name, 'renamed')
    const outside = await db.query('SELECT name FROM "Tag" WHERE id = 4')
    assert.equal(outside.rows[0].name, 'misc', 'uncommitted write must not be visible to other sessions')
  })
  assert.equal(record('after', (await prisma.tag.findUnique({ where: { id: 4 } })).name), 'renamed')
})

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------
scenario('errors/P2002', seeded, async ({ prisma, expectError, assert }) => {
  const e = await expectError('unique-email', () => prisma.user.create({ data: { name: 'Dup', email: 'alice@example.com', password: 'x' } }))
  assert.equal(e.code, 'P2002')
  assert.equal(e.meta.modelName, 'User')
  assert.equal(e.meta.driverAdapterError.cause.constraint.index, 'User_email_key')
  const e2 = await expectError('compound-unique', () => prisma.post.create({ data: { id: 'dup', title: 'Hello World', authorId: 1 } }))
  assert.equal(e2.code, 'P2002')
  assert.equal(e2.meta.driverAdapterError.cause.constraint.index, 'Post_authorId_title_key')
  const e3 = await expectError('pk', () => prisma.post.create({ data: { id: 'p1', title: 'x', authorId: 1 } }))
  assert.equal(e3.meta.driverAdapterError.cause.constraint.index, 'Post_pkey')
  const e4 = await expectError('update-to-dup', () => prisma.user.update({ where: { id: 2 }, data: { email: 'alice@example.com' } }))
  assert.equal(e4.code, 'P2002')
  const e5 = await expectError('m2m-connect-dup-ok', async () => {
    await prisma.post.update({ where: { id: 'p1' }, data: { tags: { connect: [{ id: 1 }] } } })
    throw Object.assign(new Error('connect of an existing m2m link succeeded (expected)'), { code: 'OK' })
  })
  assert.equal(e5.code, 'OK')
})

scenario('errors/P2025', seeded, async ({ prisma, expectError, assert }) => {
  const e = await expectError('update-missing', () => prisma.user.update({ where: { id: 999 }, data: { name: 'x' } }))
  assert.equal(e.code, 'P2025')
  const e2 = await expectError('delete-missing', () => prisma.user.delete({ where: { email: 'nobody@example.com' } }))
  assert.equal(e2.code, 'P2025')
  const e3 = await expectError('connect-missing', () => prisma.post.create({ data: { title: 'x', author: { connect: { id: 999 } } } }))
  assert.equal(e3.code, 'P2025')
  const e4 = await expectError('nested-update-missing', () => prisma.user.update({ where: { id: 1 }, data: { posts: { update: { where: { id: 'p3' }, data: { title: 'not mine' } } } } }))
  assert.equal(e4.code, 'P2025')
  const e5 = await expectError('m2m-connect-missing', () => prisma.post.update({ where: { id: 'p1' }, data: { tags: { connect: [{ id: 999 }] } } }))
  assert.equal(e5.code, 'P2025')
})

scenario('errors/P2003', seeded, async ({ prisma, expectError, assert }) => {
  const e = await expectError('fk-insert', () => prisma.post.create({ data: { id: 'orphan', title: 'x', authorId: 999 } }))
  assert.equal(e.code, 'P2003')
  assert.equal(e.meta.driverAdapterError.cause.constraint.index, 'Post_authorId_fkey')
  const e2 = await expectError('restrict-delete', () => prisma.user.delete({ where: { id: 2 } }))
  assert.equal(e2.code, 'P2003')
  const e3 = await expectError('fk-update', () => prisma.comment.update({ where: { id: 'c1' }, data: { authorId: 12345 } }))
  assert.equal(e3.code, 'P2003')
})

scenario('errors/misc', seeded, async ({ prisma, expectError, assert }) => {
  const e = await expectError('value-too-long', () => prisma.sample.update({ where: { id: 's1' }, data: { note: 'x'.repeat(40) } }))
  assert.equal(e.code, 'P2000')
  const e2 = await expectError('disconnect-required', () => prisma.user.update({ where: { id: 3 }, data: { posts: { set: [] } } }))
  assert.ok(['P2014', 'P2011', 'P2003'].includes(e2.code), `unexpected ${e2.code}`)
})

// ---------------------------------------------------------------------------
// Accelerate extension surface
// ---------------------------------------------------------------------------
scenario('accelerate/cache-strategy', seeded, async ({ prisma, record, assert }) => {
  const a = record('ttl-swr', await prisma.user.findMany({ where: { id: { lte: 2 } }, orderBy: { id: 'asc' }, select: { id: true }, cacheStrategy: { ttl: 60, swr: 60 } }))
  assert.deepEqual(ids(a), [1, 2])
  const b = record('ttl-tags', await prisma.post.count({ cacheStrategy: { ttl: 30, tags: ['posts'] } }))
  assert.equal(b, 5)
  const c = await prisma.user.findUnique({ where: { id: 1 }, select: { name: true }, cacheStrategy: { swr: 10 } }).withAccelerateInfo()
  record('withAccelerateInfo-data', c.data)
  assert.deepEqual(c.data, { name: 'Alice' })
  assert.ok(['ttl', 'swr', 'miss', 'none', null].includes(c.info.cacheStatus), `cacheStatus ${c.info.cacheStatus}`)
})

// ---------------------------------------------------------------------------
// Further plan shapes (nested paging, limits, dataloader batching, big IN lists)
// ---------------------------------------------------------------------------
for (const strategy of ['join', 'query']) {
  scenario(`include/nested-take-negative-cursor-${strategy}`, seeded, async ({ prisma, record, assert }) => {
    const r = record('nested-negative-take', await prisma.user.findMany({
      relationLoadStrategy: strategy,
      where: { id: { lte: 3 } },
      orderBy: { id: 'asc' },
      select: { id: true, posts: { orderBy: { id: 'asc' }, take: -1, select: { id: true } } },
    }))
    assert.deepEqual(r.map((u) => ids(u.posts)), [['p2'], ['p4'], ['p5']])
    const c = record('nested-cursor', await prisma.post.findUnique({
      relationLoadStrategy: strategy,
      where: { id: 'p1' },
      select: { comments: { orderBy: { id: 'asc' }, cursor: { id: 'c2' }, select: { id: true } } },
    }))
    assert.deepEqual(ids(c.comments), ['c2'])
    const d = record('nested-distinct', await prisma.user.findUnique({
      relationLoadStrategy: strategy,
      where: { id: 2 },
      select: { comments: { distinct: ['postId'], orderBy: { id: 'asc' }, select: { id: true, postId: true } } },
    }))
    assert.deepEqual(ids(d.comments), ['c1', 'c6'])
    const m2m = record('m2m-paged', await prisma.tag.findMany({
      relationLoadStrategy: strategy,
      orderBy: { id: 'asc' },
      select: { name: true, posts: { orderBy: { id: 'desc' }, skip: 1, take: 1, select: { id: true } }, _count: { select: { posts: true } } },
    }))
    assert.deepEqual(m2m.map((t) => [t.name, ids(t.posts), t._count.posts]), [['prisma', ['p1'], 2], ['postgres', ['p3'], 3], ['rust', [], 1], ['misc', [], 0]])
  })
}

scenario('bulk/limits', seeded, async ({ prisma, record, assert }) => {
  const u = record('updateMany-limit', await prisma.comment.updateMany({ where: { likes: { lt: 5 } }, data: { likes: 100 }, limit: 2 }))
  assert.deepEqual(u, { count: 2 })
  const d = record('deleteMany-limit', await prisma.comment.deleteMany({ where: { likes: 100 }, limit: 1 }))
  assert.deepEqual(d, { count: 1 })
  assert.equal(record('left', await prisma.comment.count()), 5)
})

scenario('filter/big-in-list', seeded, async ({ prisma, record, assert }) => {
  const many = Array.from({ length: 400 }, (_, i) => i + 1)
  const r = record('in-400', await prisma.user.findMany({ where: { id: { in: many } }, select: { id: true }, orderBy: { id: 'asc' } }))
  assert.deepEqual(ids(r), [1, 2, 3, 4])
  const r2 = record('notIn-400-strings', await prisma.post.findMany({ where: { id: { notIn: many.map((i) => `x${i}`).concat(['p1']) } }, select: { id: true }, orderBy: { id: 'asc' } }))
  assert.deepEqual(ids(r2), ['p2', 'p3', 'p4', 'p5'])
  const created = record('createMany-300', await prisma.tag.createMany({ data: Array.from({ length: 300 }, (_, i) => ({ name: `bulk-${i}` })) }))
  assert.deepEqual(created, { count: 300 })
})

scenario('batch/dataloader-findUnique', seeded, async ({ prisma, record, assert }) => {
  // Same-shaped findUnique calls in one tick are batched and compacted by the client.
  const r = record('promise-all', await Promise.all([1, 2, 3, 99].map((id) => prisma.user.findUnique({ where: { id }, select: { id: true, email: true } }))))
  assert.deepEqual(r.map((u) => u?.id ?? null), [1, 2, 3, null])
  const r2 = record('promise-all-mixed', await Promise.all([
    prisma.post.findUnique({ where: { id: 'p1' }, select: { title: true } }),
    prisma.post.findUnique({ where: { id: 'p3' }, select: { title: true } }),
    prisma.tag.findUnique({ where: { name: 'rust' } }),
  ]))
  assert.deepEqual(r2, [{ title: 'Hello World' }, { title: 'Bob writes' }, { id: 3, name: 'rust' }])
})

scenario('tx/interactive-parallel-and-batch', seeded, async ({ prisma, record, assert }) => {
  const out = record('result', await prisma.$transaction(async (tx) => {
    const found = await Promise.all([tx.user.findUnique({ where: { id: 1 } }), tx.user.findUnique({ where: { id: 2 } })])
    await tx.comment.updateMany({ where: { authorId: { in: found.map((u) => u.id) } }, data: { likes: { increment: 10 } } })
    return tx.comment.aggregate({ _sum: { likes: true } })
  }))
  // c1, c3, c5, c6 belong to users 1 and 2: 16 + 4 * 10
  assert.equal(out._sum.likes, 56)
})

scenario('nested/one-to-many-set-disconnect', seeded, async ({ prisma, record, assert }) => {
  const u = record('set-comments', await prisma.user.update({ where: { id: 2 }, data: { comments: { set: [{ id: 'c4' }] } }, include: { comments: { orderBy: { id: 'asc' }, select: { id: true } } } }))
  assert.deepEqual(ids(u.comments), ['c4'])
  const u2 = record('disconnect-comments', await prisma.user.update({ where: { id: 1 }, data: { comments: { disconnect: [{ id: 'c3' }] } }, select: { comments: { select: { id: true } } } }))
  assert.deepEqual(ids(u2.comments), ['c5'])
  const u3 = record('connect-comments', await prisma.user.update({ where: { id: 4 }, data: { comments: { connect: [{ id: 'c1' }, { id: 'c2' }] } }, select: { comments: { select: { id: true }, orderBy: { id: 'asc' } } } }))
  assert.deepEqual(ids(u3.comments), ['c1', 'c2'])
  // c3 has no author after the disconnect above, so upsert takes the create branch
  const c = record('to-one-upsert', await prisma.comment.update({ where: { id: 'c3' }, data: { author: { upsert: { create: { name: 'Anon', email: 'anon@example.com', password: 'x' }, update: { name: 'never' } } } }, select: { author: { select: { name: true } } } }))
  assert.equal(c.author.name, 'Anon')
  const c2 = record('to-one-update', await prisma.comment.update({ where: { id: 'c3' }, data: { author: { update: { name: 'Anon2' } } }, select: { author: { select: { name: true } } } }))
  assert.equal(c2.author.name, 'Anon2')
  const c3 = record('to-one-delete', await prisma.comment.update({ where: { id: 'c3' }, data: { author: { delete: true } }, select: { authorId: true } }))
  assert.equal(c3.authorId, null)
  const upsertNested = record('upsert-non-native', await prisma.user.upsert({
    where: { email: 'fresh@example.com' },
    create: { name: 'Fresh', email: 'fresh@example.com', password: 'x', posts: { create: { id: 'pf', title: 'fresh post' } } },
    update: {},
    include: { posts: true },
  }))
  assert.deepEqual(ids(upsertNested.posts), ['pf'])
})

scenario('filter/json-more', seeded, async ({ prisma, record, assert }) => {
  const cases = {
    'string-ends': [{ metadata: { path: ['lang'], string_ends_with: 'r' } }, ['p2']],
    'array-starts': [{ metadata: { path: ['tags'], array_starts_with: 'intro' } }, ['p1']],
    'array-ends': [{ metadata: { path: ['tags'], array_ends_with: 'hello' } }, ['p1']],
    'path-not': [{ metadata: { path: ['lang'], not: 'en' } }, ['p2']],
    'path-lt': [{ metadata: { path: ['score'], lt: 5 } }, ['p2']],
    'nested-object-equals': [{ metadata: { path: ['extra'], equals: { k: 'v' } } }, ['p5']],
  }
  for (const [label, [where, expected]] of Object.entries(cases)) {
    assert.deepEqual(ids(record(label, await q(prisma, where))), expected, label)
  }
})

scenario('raw/typed-columns', seeded, async ({ prisma, record, assert }) => {
  const r = record('table-columns', await prisma.$queryRaw`SELECT id, kind, day, at, amount, counter, doc, data, blob, floats, ints, flags, roles, note FROM "Sample" ORDER BY id`)
  assert.equal(r[0].kind, 'ADMIN')
  assert.equal(r[0].counter, -9223372036854775808n)
  assert.deepEqual(r[0].ints, [1, 2, 3])
  assert.deepEqual(r[0].doc, { b: 2, a: 1 })
  const r2 = record('uuid-and-arrays', await prisma.$queryRaw`SELECT '00000000-0000-4000-8000-000000000000'::uuid AS u, ARRAY[1.5,2]::float8[] AS fa, ARRAY[true,null]::bool[] AS ba, ARRAY['2024-01-01'::date] AS da, '12:34:56'::time AS t`)
  assert.deepEqual(r2[0].ba, [true, null])
  const r3 = record('empty-result', await prisma.$queryRaw`SELECT id FROM "User" WHERE false`)
  assert.deepEqual(r3, [])
  const r4 = record('list-param', await prisma.$queryRaw`SELECT count(*)::int AS n FROM "User" WHERE id = ANY(${[1, 2, 3]})`)
  assert.deepEqual(r4, [{ n: 3 }])
})
