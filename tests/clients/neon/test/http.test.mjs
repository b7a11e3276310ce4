// SQL-over-HTTP: neon() / sql.query() / sql.transaction() through tidepool's POST /sql,
// each result compared with node-postgres run directly against PostgreSQL.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  env, needs, configureDriver, directPool, neon, neonConfig, NeonPool, comparable, normalize,
  rejection, assertSameError, TYPE_CASES, itemsTableSql, grantSql, ITEM_COLUMNS, itemValues,
} from '../lib/helpers.mjs';

const T = 'neon_http_items';
const CHILD = 'neon_http_children';

describe('Neon SQL-over-HTTP', needs('http', 'directUrl', 'connString'), () => {
  let direct;
  let sql; // rows as objects (driver default)
  let full; // fullResults: command, rowCount, fields, rows

  before(async () => {
    configureDriver();
    direct = directPool();
    await direct.query(`DROP TABLE IF EXISTS ${CHILD}; ${itemsTableSql(T)}
      CREATE TABLE ${CHILD} (id serial PRIMARY KEY, item_id int NOT NULL REFERENCES ${T}(id), note text);
      ${grantSql(T, CHILD)}`);
    sql = neon(env.connString);
    full = neon(env.connString, { fullResults: true });
  });

  after(async () => {
    await direct?.query(`DROP TABLE IF EXISTS ${CHILD}; DROP TABLE IF EXISTS ${T};`);
    await direct?.end();
  });

  /** Runs the same statement through tidepool and directly; asserts identical results. */
  async function same(text, values = [], label = text) {
    const [viaNeon, viaPg] = await Promise.all([full.query(text, values), direct.query(text, values)]);
    assert.deepEqual(comparable(viaNeon), comparable(viaPg), label);
    return viaNeon;
  }

  describe('types with parameters', () => {
    for (const [label, expr, param] of TYPE_CASES) {
      it(label, async () => {
        await same(`SELECT ${expr} AS v`, [param], label);
      });
    }

    it('all types in one row, array mode', async () => {
      const exprs = TYPE_CASES.map(([, expr], i) => `${expr.replace('$1', `$${i + 1}`)} AS c${i}`);
      const params = TYPE_CASES.map(([, , p]) => p);
      const text = `SELECT ${exprs.join(', ')}`;
      const arrays = neon(env.connString, { arrayMode: true, fullResults: true });
      const [viaNeon, viaPg] = await Promise.all([
        arrays.query(text, params),
        direct.query({ text, values: params, rowMode: 'array' }),
      ]);
      assert.equal(viaNeon.rowAsArray, true);
      assert.deepEqual(comparable(viaNeon), comparable(viaPg));
    });

    it('server-side values of every type (no parameters)', async () => {
      await same(`SELECT 1::int2 a, 2::int4 b, 9007199254740993::int8 c, 1.5::float4 d, 'NaN'::float8 e,
        '-Infinity'::float8 f, 12345.678901234567890::numeric g, true h, 'x'::text i, '2024-01-02'::date j,
        '2024-01-02 03:04:05.678'::timestamp k, '2024-01-02 03:04:05.678+02'::timestamptz l, '03:04:05'::time m,
        '1 day 2 hours'::interval n, '{"k":[1,2]}'::json o, '{"k":[1,2]}'::jsonb p, '\\x0102ff'::bytea q,
        'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid r, ARRAY[1,NULL,3]::int4[] s,
        ARRAY['a','b c','"q"',NULL]::text[] t, ARRAY[1,2]::int8[] u, '{"{\\"x\\":1}"}'::jsonb[] v,
        '192.168.0.1'::inet w, 12.34::money x, NULL::int y, '[0:1]={5,6}'::int[] z,
        ARRAY[[1,2],[3,4]] aa, 'infinity'::timestamptz ab, '{}'::text[] ac`);
    });

    it('tagged template with interpolated values', async () => {
      const now = new Date('2020-02-29T12:00:00.000Z');
      const bytes = Buffer.from([1, 2, 255]);
      const rows = await sql`SELECT ${42}::int AS n, ${"it's"} AS s, ${null}::text AS nul, ${true} AS b,
        ${now}::timestamptz AS ts, ${[1, 2, 3]}::int[] AS arr, ${{ a: 1 }}::jsonb AS j, ${123n}::int8 AS big,
        ${bytes} AS bytes`;
      const { rows: expected } = await direct.query(
        `SELECT $1::int AS n, $2 AS s, $3::text AS nul, $4 AS b, $5::timestamptz AS ts, $6::int[] AS arr,
          $7::jsonb AS j, $8::int8 AS big, $9::bytea AS bytes`,
        [42, "it's", null, true, now, [1, 2, 3], { a: 1 }, 123n, bytes],
      );
      assert.deepEqual(normalize(rows), normalize(expected));
    });

    it('many rows', async () => {
      await same('SELECT g AS n, md5(g::text) AS h, g % 3 = 0 AS fizz FROM generate_series(1, 2000) g');
    });

    it('no rows and duplicate column names', async () => {
      await same('SELECT 1 AS x, 2 AS x WHERE false');
      await same('SELECT 1 AS x, 2 AS x');
    });
  });

  describe('commands', () => {
    it('INSERT … RETURNING, UPDATE, DELETE, SELECT from a table', async () => {
      const insert = `INSERT INTO ${T} (${ITEM_COLUMNS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12) RETURNING *`;
      const viaNeon = await full.query(insert, itemValues('http-a'));
      assert.equal(viaNeon.command, 'INSERT');
      assert.equal(viaNeon.rowCount, 1);
      const { rows } = await direct.query(`SELECT * FROM ${T} WHERE name = 'http-a'`);
      assert.deepEqual(normalize(viaNeon.rows), normalize(rows));
      assert.ok(viaNeon.fields.every((f) => f.tableID > 0 && f.columnID > 0), 'tableID/columnID set');

      await same(`SELECT * FROM ${T} WHERE name = $1`, ['http-a']);
      await same(`UPDATE ${T} SET qty = qty + 1 WHERE name = $1 AND false`, ['http-a']);
      const upd = await full.query(`UPDATE ${T} SET qty = qty + 1 WHERE name = $1`, ['http-a']);
      assert.deepEqual([upd.command, upd.rowCount, upd.rows], ['UPDATE', 1, []]);
      const del = await full.query(`DELETE FROM ${T} WHERE name = $1`, ['http-a']);
      assert.deepEqual([del.command, del.rowCount], ['DELETE', 1]);
    });

    it('DDL has command, no fields, rowCount null', async () => {
      const r = await full.query('CREATE TEMP TABLE neon_http_tmp (x int)');
      assert.deepEqual([r.command, r.rowCount, r.fields, r.rows], ['CREATE', null, [], []]);
      const d = await full.query('DROP TABLE IF EXISTS neon_http_never_existed');
      assert.deepEqual([d.command, d.rowCount], ['DROP', null]);
    });

    it('multi-row INSERT rowCount', async () => {
      const r = await full.query(`INSERT INTO ${T} (name) VALUES ($1), ($2), ($3)`, ['m1', 'm2', 'm3']);
      assert.deepEqual([r.command, r.rowCount], ['INSERT', 3]);
      await direct.query(`DELETE FROM ${T} WHERE name LIKE 'm_'`);
    });

    it('one statement per query (42601)', async () => {
      const err = await rejection(() => sql.query('SELECT 1; SELECT 2'));
      assert.equal(err.name, 'NeonDbError');
      assert.equal(err.code, '42601');
      assert.equal(err.message, 'cannot insert multiple commands into a prepared statement');
    });
  });

  describe('sql.transaction', () => {
    it('commits all statements and returns every result', async () => {
      const [ins, count, sel] = await sql.transaction([
        sql`INSERT INTO ${sql.unsafe(T)} (name, qty) VALUES (${'tx-1'}, ${1}), (${'tx-2'}, ${2}) RETURNING name`,
        sql`SELECT count(*)::int AS n FROM ${sql.unsafe(T)} WHERE name LIKE 'tx-%'`,
        sql`SELECT name, qty FROM ${sql.unsafe(T)} WHERE name LIKE 'tx-%' ORDER BY name`,
      ]);
      assert.deepEqual(ins, [{ name: 'tx-1' }, { name: 'tx-2' }]);
      assert.deepEqual(count, [{ n: 2 }]);
      assert.deepEqual(sel, [{ name: 'tx-1', qty: 1 }, { name: 'tx-2', qty: 2 }]);
      const { rows } = await direct.query(`SELECT name, qty FROM ${T} WHERE name LIKE 'tx-%' ORDER BY name`);
      assert.deepEqual(rows, sel);
    });

    it('function form, fullResults and arrayMode', async () => {
      const results = await sql.transaction(
        (txn) => [txn`SELECT 1 AS a, 'x' AS b`, txn`SELECT ${5}::int8 AS c`],
        { fullResults: true, arrayMode: true },
      );
      assert.deepEqual(results.map((r) => [r.command, r.rowCount, r.rowAsArray, r.rows]), [
        ['SELECT', 1, true, [[1, 'x']]],
        ['SELECT', 1, true, [['5']]],
      ]);
    });

    it('rolls back everything when a statement fails', async () => {
      await direct.query(`INSERT INTO ${T} (name) VALUES ('dup')`);
      const err = await rejection(() => sql.transaction([
        sql`INSERT INTO ${sql.unsafe(T)} (name) VALUES (${'rb-1'})`,
        sql`INSERT INTO ${sql.unsafe(T)} (name) VALUES (${'dup'})`,
        sql`INSERT INTO ${sql.unsafe(T)} (name) VALUES (${'rb-3'})`,
      ]));
      assert.equal(err.name, 'NeonDbError');
      assert.equal(err.code, '23505');
      assert.equal(err.constraint, `${T}_name_key`);
      const { rows } = await direct.query(`SELECT name FROM ${T} WHERE name LIKE 'rb-%'`);
      assert.deepEqual(rows, [], 'earlier statements rolled back');
      // The pooled connection is usable afterwards (not left in an aborted transaction).
      assert.deepEqual(await sql`SELECT 1 AS ok`, [{ ok: 1 }]);
    });

    it('isolation level, read only, deferrable', async () => {
      const show = (txn) => [
        txn`SHOW transaction_isolation`,
        txn`SHOW transaction_read_only`,
        txn`SHOW transaction_deferrable`,
      ];
      const flat = (results) => results.map((r) => Object.values(r[0])[0]);
      assert.deepEqual(flat(await sql.transaction(show)), ['read committed', 'off', 'off']);
      for (const [isolationLevel, expected] of [
        ['ReadUncommitted', 'read uncommitted'],
        ['ReadCommitted', 'read committed'],
        ['RepeatableRead', 'repeatable read'],
        ['Serializable', 'serializable'],
      ]) {
        assert.deepEqual(flat(await sql.transaction(show, { isolationLevel })), [expected, 'off', 'off']);
      }
      assert.deepEqual(
        flat(await sql.transaction(show, { isolationLevel: 'Serializable', readOnly: true, deferrable: true })),
        ['serializable', 'on', 'on'],
      );
      assert.deepEqual(flat(await sql.transaction(show, { readOnly: false, deferrable: false })), ['read committed', 'off', 'off']);
    });

    it('readOnly rejects writes like PostgreSQL does', async () => {
      const err = await rejection(() => sql.transaction(
        [sql`INSERT INTO ${sql.unsafe(T)} (name) VALUES (${'ro'})`],
        { readOnly: true },
      ));
      const client = await direct.connect();
      try {
        await client.query('BEGIN READ ONLY');
        const expected = await rejection(() => client.query(`INSERT INTO ${T} (name) VALUES ($1)`, ['ro']));
        await client.query('ROLLBACK');
        assert.equal(err.code, '25006');
        assertSameError(err, expected);
      } finally {
        client.release();
      }
    });

    it('settings made inside a batch do not leak into later requests', async () => {
      await sql.transaction([sql`SET IntervalStyle = 'iso_8601'`, sql`SELECT '1 day'::interval::text AS i`]);
      assert.deepEqual(await sql`SELECT '1 day'::interval::text AS i`, [{ i: '1 day' }]);
    });
  });

  describe('errors', () => {
    before(async () => {
      await direct.query(`
        INSERT INTO ${T} (name) VALUES ('taken') ON CONFLICT DO NOTHING;
        CREATE OR REPLACE FUNCTION neon_http_raise() RETURNS void LANGUAGE plpgsql AS $$
          BEGIN RAISE EXCEPTION 'custom failure' USING DETAIL = 'some detail', HINT = 'some hint', ERRCODE = 'P0001'; END $$;
        CREATE OR REPLACE FUNCTION neon_http_inner() RETURNS int LANGUAGE plpgsql AS $$
          BEGIN RETURN (SELECT 1 / 0); END $$;`);
    });
    after(async () => {
      await direct?.query('DROP FUNCTION IF EXISTS neon_http_raise(); DROP FUNCTION IF EXISTS neon_http_inner();');
    });

    const cases = [
      ['unique violation', `INSERT INTO ${T} (name) VALUES ($1)`, ['taken']],
      ['not-null violation', `INSERT INTO ${T} (name) VALUES ($1)`, [null]],
      ['check violation', `INSERT INTO ${T} (name, qty) VALUES ($1, $2)`, ['neg', -1]],
      ['foreign key violation', `INSERT INTO ${CHILD} (item_id) VALUES ($1)`, [-1]],
      ['syntax error with position', 'SELEC 1', []],
      ['undefined table with position', 'SELECT * FROM neon_http_nope', []],
      ['undefined column', `SELECT nope FROM ${T}`, []],
      ['invalid input syntax', 'SELECT $1::int', ['abc']],
      ['division by zero', 'SELECT 1 / 0', []],
      ['raise with detail and hint', 'SELECT neon_http_raise()', []],
      ['error with context (where)', 'SELECT neon_http_inner()', []],
      ['internal query and position', "DO $$ BEGIN EXECUTE 'SELECT * FROM neon_http_nope'; END $$", []],
      ['numeric out of range', 'SELECT $1::int2', [40000]],
      ['wrong parameter count', 'SELECT $1::int, $2::int', [1]],
    ];
    for (const [label, text, values] of cases) {
      it(label, async () => {
        const viaNeon = await rejection(() => sql.query(text, values));
        const viaPg = await rejection(() => direct.query(text, values));
        assert.equal(viaNeon.name, 'NeonDbError', `${label}: ${viaNeon}`);
        assertSameError(viaNeon, viaPg, label);
      });
    }

    it('unique violation carries code, constraint, detail, schema and table', async () => {
      const err = await rejection(() => sql`INSERT INTO ${sql.unsafe(T)} (name) VALUES (${'taken'})`);
      assert.deepEqual(
        [err.code, err.constraint, err.detail, err.schema, err.table, err.severity],
        ['23505', `${T}_name_key`, 'Key (name)=(taken) already exists.', 'public', T, 'ERROR'],
      );
    });

    it('a stray BEGIN or a failed request does not poison the next one', async () => {
      await sql`BEGIN`;
      await rejection(() => sql`SELECT 1 / 0`);
      assert.deepEqual(await sql`SELECT 1 AS ok`, [{ ok: 1 }]);
      await sql`BEGIN`;
      await sql`INSERT INTO ${sql.unsafe(T)} (name) VALUES (${'after-begin'})`;
      // Visible to another session: the INSERT was not trapped in a transaction left open.
      const { rows } = await direct.query(`SELECT name FROM ${T} WHERE name = 'after-begin'`);
      assert.deepEqual(rows, [{ name: 'after-begin' }]);
    });

    it('session settings do not leak between requests', async () => {
      await sql`SELECT set_config('application_name', 'leaky', false)`;
      await sql`SET search_path = pg_catalog`;
      const [{ app }] = await sql`SELECT current_setting('application_name') AS app`;
      assert.notEqual(app, 'leaky');
      const [{ search_path: searchPath }] = await sql`SHOW search_path`;
      assert.notEqual(searchPath, 'pg_catalog');
    });

    it('wrong password is a 400 with SQLSTATE 28P01', async () => {
      const url = new URL(env.connString);
      url.password = 'definitely-not-the-password';
      const err = await rejection(() => neon(url.toString())`SELECT 1`);
      assert.equal(err.name, 'NeonDbError', String(err));
      assert.equal(err.code, '28P01');
    });
  });

  describe('Pool with poolQueryViaFetch', () => {
    it('queries over HTTP and matches node-postgres', async () => {
      neonConfig.poolQueryViaFetch = true;
      const pool = new NeonPool({ connectionString: env.connString });
      try {
        const text = 'SELECT $1::int + 1 AS n, $2::text[] AS t, now()::date = current_date AS today';
        const [viaNeon, viaPg] = await Promise.all([pool.query(text, [41, ['a', null]]), direct.query(text, [41, ['a', null]])]);
        assert.equal(viaNeon.viaNeonFetch, true);
        assert.deepEqual(comparable(viaNeon), comparable(viaPg));
        const arrays = await pool.query({ text, values: [41, ['a', null]], rowMode: 'array' });
        assert.deepEqual(normalize(arrays.rows), [[42, ['a', null], true]]);
      } finally {
        neonConfig.poolQueryViaFetch = false;
        await pool.end();
      }
    });
  });

  describe('wire format (raw fetch)', () => {
    const headers = () => ({ 'Neon-Connection-String': env.connString, 'Content-Type': 'application/json' });
    const post = (body, extra = {}) => fetch(`${env.http}/sql`, {
      method: 'POST', headers: { ...headers(), ...extra }, body: typeof body === 'string' ? body : JSON.stringify(body),
    });

    it('raw text + array mode envelope', async () => {
      const res = await post({ query: 'SELECT 1::int8 AS n, NULL::text AS z', params: [] },
        { 'Neon-Raw-Text-Output': 'true', 'Neon-Array-Mode': 'true' });
      assert.equal(res.status, 200);
      assert.match(res.headers.get('content-type'), /application\/json/);
      assert.equal(res.headers.get('access-control-allow-origin'), '*');
      const body = await res.json();
      assert.deepEqual(Object.keys(body), ['fields', 'rows', 'command', 'rowCount', 'rowAsArray']);
      assert.deepEqual(body.rows, [['1', null]]);
      assert.deepEqual(body.fields[0], {
        name: 'n', dataTypeID: 20, tableID: 0, columnID: 0, dataTypeSize: 8, dataTypeModifier: -1, format: 'text',
      });
      assert.deepEqual([body.command, body.rowCount, body.rowAsArray], ['SELECT', 1, true]);
    });

    it('JSON mode converts values like Neon', async () => {
      const res = await post({
        query: `SELECT 1::int2 a, 2::int4 b, 3::int8 c, 1.5::numeric d, 2.5::float8 e, 'NaN'::float4 f,
          true g, '{"k":[1,2]}'::jsonb h, ARRAY[1,NULL]::int[] i, ARRAY['x','y z']::text[] j,
          '2024-01-02'::date k, '\\x01'::bytea l, NULL::int m, '-Infinity'::float8 n`,
        params: [],
      });
      assert.equal(res.status, 200);
      const body = await res.json();
      assert.equal(body.rowAsArray, false);
      assert.deepEqual(body.rows, [{
        a: 1, b: 2, c: '3', d: '1.5', e: 2.5, f: 'NaN', g: true, h: { k: [1, 2] }, i: [1, null], j: ['x', 'y z'],
        k: '2024-01-02', l: '\\x01', m: null, n: '-Infinity',
      }]);
    });

    it('raw JSON parameters (numbers, booleans, objects, arrays)', async () => {
      // Written by hand: JSON.stringify cannot produce 9007199254740993 from a JS number.
      const res = await post(
        '{"query":"SELECT $1::int8 a, $2::bool b, $3::jsonb c, $4::int[] d, $5::text[] e, $6::text f",'
        + '"params":[9007199254740993, true, {"x": [1, "y"]}, [[1, 2], [3, null]], ["a\\"b", "c\\\\d", null], null]}',
        { 'Neon-Array-Mode': 'true' },
      );
      const body = await res.json();
      assert.equal(res.status, 200, JSON.stringify(body));
      assert.deepEqual(body.rows, [['9007199254740993', true, { x: [1, 'y'] }, [[1, 2], [3, null]], ['a"b', 'c\\d', null], null]]);
    });

    it('batch body and echoed headers', async () => {
      const res = await post({ queries: [{ query: 'SELECT 1 AS a', params: [] }, { query: 'SELECT 2 AS b', params: [], arrayMode: true }] },
        { 'Neon-Raw-Text-Output': 'true', 'Neon-Batch-Isolation-Level': 'RepeatableRead', 'Neon-Batch-Read-Only': 'true' });
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('neon-batch-isolation-level'), 'RepeatableRead');
      assert.equal(res.headers.get('neon-batch-read-only'), 'true');
      const body = await res.json();
      assert.deepEqual(body.results.map((r) => r.rows), [[{ a: '1' }], [['2']]]);
      assert.deepEqual(body.results.map((r) => r.rowAsArray), [false, true]);
    });

    it('Postgres error body has all 17 keys', async () => {
      const res = await post({ query: 'SELECT * FROM neon_http_nope', params: [] }, { 'Neon-Raw-Text-Output': 'true' });
      assert.equal(res.status, 400);
      const body = await res.json();
      assert.deepEqual(Object.keys(body).sort(), [
        'code', 'column', 'constraint', 'dataType', 'detail', 'file', 'hint', 'internalPosition', 'internalQuery',
        'line', 'message', 'position', 'routine', 'schema', 'severity', 'table', 'where',
      ]);
      assert.deepEqual([body.code, body.position, body.severity], ['42P01', '15', 'ERROR']);
      assert.equal(typeof body.line, 'string');
    });

    it('bad requests are 400 with a message', async () => {
      for (const [label, body, extra] of [
        ['invalid JSON', '{not json', {}],
        ['no query', '{}', {}],
        ['bad isolation level', { queries: [] }, { 'Neon-Batch-Isolation-Level': 'Chaos' }],
        ['bad connection string', { query: 'SELECT 1' }, { 'Neon-Connection-String': 'mysql://u:p@h/db' }],
      ]) {
        const res = await post(body, extra);
        assert.equal(res.status, 400, label);
        const json = await res.json();
        assert.equal(typeof json.message, 'string', label);
      }
      const res = await fetch(`${env.http}/sql`, { method: 'POST', body: '{"query":"SELECT 1"}' });
      assert.equal(res.status, 400, 'missing Neon-Connection-String');
    });

    it('CORS preflight', async () => {
      const res = await fetch(`${env.http}/sql`, { method: 'OPTIONS' });
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('access-control-allow-origin'), '*');
      const allowed = res.headers.get('access-control-allow-headers') ?? '';
      for (const h of ['Neon-Connection-String', 'Neon-Raw-Text-Output', 'Neon-Array-Mode', 'Neon-Batch-Deferrable']) {
        assert.ok(allowed.toLowerCase().includes(h.toLowerCase()), h);
      }
    });

    it('request body over the limit is 413', async () => {
      const res = await post({ query: `SELECT '${'x'.repeat(env.maxBytes)}'`, params: [] });
      assert.equal(res.status, 413);
    });

    it('response over the limit is 507 and the driver reports it', async () => {
      const n = Math.ceil(env.maxBytes / 1000) + 10;
      const res = await post({ query: `SELECT repeat('x', 1000) FROM generate_series(1, ${n})`, params: [] },
        { 'Neon-Raw-Text-Output': 'true' });
      assert.equal(res.status, 507);
      assert.match((await res.json()).message, /response is too large/);
      const err = await rejection(() => sql.query(`SELECT repeat('x', 1000) FROM generate_series(1, ${n})`));
      assert.match(err.message, /HTTP status 507/);
    });
  });
});
