// Postgres-over-WebSocket: the driver's Pool and Client through tidepool's WebSocket endpoint
// (neonConfig.wsProxy = host => `${TIDEPOOL_WS}/v2`), with and without pipelined connect, each
// result compared with node-postgres run directly against PostgreSQL.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  env, needs, configureDriver, directPool, neonConfig, NeonPool, NeonClient, comparable, normalize,
  rejection, assertSameError, TYPE_CASES, itemsTableSql, grantSql, ITEM_COLUMNS, itemValues,
} from '../lib/helpers.mjs';

const T = 'neon_ws_items';

describe('Neon Postgres-over-WebSocket', needs('ws', 'directUrl', 'connString'), () => {
  let direct;

  before(async () => {
    configureDriver();
    direct = directPool();
    await direct.query(`${itemsTableSql(T)} ${grantSql(T)}`);
  });

  after(async () => {
    await direct?.query(`DROP TABLE IF EXISTS ${T}`);
    await direct?.end();
  });

  /** Runs the same query on a Neon pool/client and directly; asserts identical results. */
  async function same(neonSide, query, label) {
    const [viaNeon, viaPg] = await Promise.all([neonSide.query(query), direct.query(query)]);
    const pick = (r) => (Array.isArray(r) ? r.map(comparable) : comparable(r));
    assert.deepEqual(pick(viaNeon), pick(viaPg), label ?? query.text ?? query);
    return viaNeon;
  }

  for (const pipelineConnect of ['password', false]) {
    describe(`pipelineConnect: ${JSON.stringify(pipelineConnect)}`, () => {
      let pool;
      const tag = pipelineConnect ? 'pipe' : 'nopipe';

      before(() => {
        neonConfig.pipelineConnect = pipelineConnect;
        pool = new NeonPool({ connectionString: env.connString, max: 3 });
      });

      after(async () => {
        await pool?.end();
        neonConfig.pipelineConnect = 'password';
      });

      /** A connected Client with this describe's settings; ended by the caller. */
      async function client() {
        const c = new NeonClient({ connectionString: env.connString });
        await c.connect();
        return c;
      }

      describe('types with parameters (Pool.query)', () => {
        for (const [label, expr, param] of TYPE_CASES) {
          it(label, async () => {
            await same(pool, { text: `SELECT ${expr} AS v`, values: [param] }, label);
          });
        }

        it('all types in one row, rowMode array', async () => {
          const exprs = TYPE_CASES.map(([, expr], i) => `${expr.replace('$1', `$${i + 1}`)} AS c${i}`);
          await same(pool, {
            text: `SELECT ${exprs.join(', ')}`,
            values: TYPE_CASES.map(([, , p]) => p),
            rowMode: 'array',
          });
        });

        it('many rows', async () => {
          await same(pool, 'SELECT g AS n, repeat(md5(g::text), 8) AS h FROM generate_series(1, 5000) g');
        });
      });

      it('simple-protocol multi-statement query returns every result', async () => {
        await same(pool, "SELECT 1 AS a; SELECT 'two' AS b, NULL::int AS c; VALUES (1), (2)");
      });

      it('insert, read back and compare with the direct view', async () => {
        const name = `${tag}-row`;
        const inserted = await pool.query(
          `INSERT INTO ${T} (${ITEM_COLUMNS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12) RETURNING *`,
          itemValues(name),
        );
        assert.deepEqual([inserted.command, inserted.rowCount], ['INSERT', 1]);
        const { rows } = await direct.query(`SELECT * FROM ${T} WHERE name = $1`, [name]);
        assert.deepEqual(normalize(inserted.rows), normalize(rows));
        await same(pool, { text: `SELECT * FROM ${T} WHERE name = $1`, values: [name] });
      });

      it('multi-statement transaction commits atomically', async () => {
        const c = await client();
        try {
          const a = `${tag}-tx-a`;
          const b = `${tag}-tx-b`;
          await c.query('BEGIN');
          await c.query(`INSERT INTO ${T} (name, qty) VALUES ($1, $2)`, [a, 1]);
          await c.query(`INSERT INTO ${T} (name, qty) VALUES ($1, $2)`, [b, 2]);
          await c.query(`UPDATE ${T} SET qty = qty * 10 WHERE name = ANY($1)`, [[a, b]]);
          const inside = await c.query(`SELECT name, qty FROM ${T} WHERE name = ANY($1) ORDER BY name`, [[a, b]]);
          assert.deepEqual(inside.rows, [{ name: a, qty: 10 }, { name: b, qty: 20 }]);
          const outside = await direct.query(`SELECT name FROM ${T} WHERE name = ANY($1)`, [[a, b]]);
          assert.deepEqual(outside.rows, [], 'uncommitted rows are invisible to other sessions');
          await c.query('COMMIT');
          const after = await direct.query(`SELECT name, qty FROM ${T} WHERE name = ANY($1) ORDER BY name`, [[a, b]]);
          assert.deepEqual(after.rows, inside.rows);
        } finally {
          await c.end();
        }
      });

      it('ROLLBACK discards, savepoints partially roll back', async () => {
        const c = await client();
        try {
          await c.query('BEGIN');
          await c.query(`INSERT INTO ${T} (name) VALUES ($1)`, [`${tag}-gone`]);
          await c.query('ROLLBACK');
          await c.query('BEGIN');
          await c.query(`INSERT INTO ${T} (name) VALUES ($1)`, [`${tag}-kept`]);
          await c.query('SAVEPOINT s1');
          await c.query(`INSERT INTO ${T} (name) VALUES ($1)`, [`${tag}-undone`]);
          await c.query('ROLLBACK TO SAVEPOINT s1');
          await c.query('COMMIT');
          const { rows } = await direct.query(`SELECT name FROM ${T} WHERE name LIKE $1 ORDER BY name`, [`${tag}-%`]);
          assert.deepEqual(rows.map((r) => r.name).filter((n) => /gone|kept|undone/.test(n)), [`${tag}-kept`]);
        } finally {
          await c.end();
        }
      });

      it('an error aborts the transaction exactly as on a direct connection', async () => {
        await direct.query(`INSERT INTO ${T} (name) VALUES ($1) ON CONFLICT DO NOTHING`, ['ws-taken']);
        const c = await client();
        const d = await direct.connect();
        try {
          const errors = [];
          for (const conn of [c, d]) {
            await conn.query('BEGIN');
            const dup = await rejection(() => conn.query(`INSERT INTO ${T} (name) VALUES ($1)`, ['ws-taken']));
            const aborted = await rejection(() => conn.query('SELECT 1'));
            await conn.query('ROLLBACK');
            const ok = await conn.query('SELECT 1 AS ok');
            assert.deepEqual(ok.rows, [{ ok: 1 }]);
            errors.push([dup, aborted]);
          }
          assert.equal(errors[0][0].code, '23505');
          assert.equal(errors[0][0].constraint, `${T}_name_key`);
          assert.equal(errors[0][0].detail, 'Key (name)=(ws-taken) already exists.');
          assertSameError(errors[0][0], errors[1][0], 'unique violation');
          assert.equal(errors[0][1].code, '25P02');
          assertSameError(errors[0][1], errors[1][1], 'in failed transaction');
        } finally {
          d.release();
          await c.end();
        }
      });

      it('isolation level and SET LOCAL inside a transaction', async () => {
        const c = await client();
        try {
          await c.query('BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY DEFERRABLE');
          await c.query("SET LOCAL statement_timeout = '1234ms'");
          const r = await c.query(`SELECT current_setting('transaction_isolation') AS iso,
            current_setting('transaction_read_only') AS ro, current_setting('statement_timeout') AS st`);
          assert.deepEqual(r.rows, [{ iso: 'serializable', ro: 'on', st: '1234ms' }]);
          const err = await rejection(() => c.query(`INSERT INTO ${T} (name) VALUES ('ro')`));
          assert.equal(err.code, '25006');
          await c.query('ROLLBACK');
        } finally {
          await c.end();
        }
      });

      it('named prepared statements are reused with new parameters', async () => {
        const c = await client();
        const d = await direct.connect();
        try {
          const name = `neon_ws_named_${tag}`;
          const text = 'SELECT $1::int * 2 AS doubled, $2::text[] AS arr, $3::timestamptz AS ts';
          for (const values of [
            [1, ['a'], new Date('2024-01-01T00:00:00Z')],
            [21, ['b', null, 'c d'], new Date('2024-02-29T12:34:56.789Z')],
            [null, [], null],
          ]) {
            const [viaNeon, viaPg] = [await c.query({ name, text, values }), await d.query({ name, text, values })];
            assert.deepEqual(comparable(viaNeon), comparable(viaPg));
          }
          // The same name on other pooled connections, concurrently.
          const results = await Promise.all(
            [1, 2, 3, 4, 5, 6].map((i) => pool.query({ name, text, values: [i, [String(i)], null] })),
          );
          assert.deepEqual(results.map((r) => r.rows[0].doubled), [2, 4, 6, 8, 10, 12]);
          // A named statement inside a transaction, then used again after COMMIT.
          await c.query('BEGIN');
          const inTx = await c.query({ name, text, values: [100, ['x'], null] });
          await c.query('COMMIT');
          const afterTx = await c.query({ name, text, values: [101, ['y'], null] });
          assert.deepEqual([inTx.rows[0].doubled, afterTx.rows[0].doubled], [200, 202]);
        } finally {
          d.release();
          await c.end();
        }
      });

      it('errors carry every field (syntax error with position)', async () => {
        const viaNeon = await rejection(() => pool.query('SELEC 1'));
        const viaPg = await rejection(() => direct.query('SELEC 1'));
        assertSameError(viaNeon, viaPg);
        const paramNeon = await rejection(() => pool.query('SELECT $1::int', ['abc']));
        const paramPg = await rejection(() => direct.query('SELECT $1::int', ['abc']));
        assertSameError(paramNeon, paramPg);
      });

      it('pool serves more concurrent queries than it has connections', async () => {
        const results = await Promise.all(
          Array.from({ length: 12 }, (_, i) => pool.query('SELECT $1::int AS i, pg_sleep(0.05) IS NULL AS slept', [i])),
        );
        assert.deepEqual(results.map((r) => r.rows[0].i), Array.from({ length: 12 }, (_, i) => i));
      });

      it('wrong password is rejected with 28P01', async () => {
        const url = new URL(env.connString);
        url.password = 'definitely-not-the-password';
        const c = new NeonClient({ connectionString: url.toString() });
        // With pipelined connect, connect() resolves at once and the failure arrives with the
        // first query.
        const err = await rejection(async () => {
          await c.connect();
          await c.query('SELECT 1');
        });
        assert.equal(err.code, '28P01', String(err));
        await c.end().catch(() => {});
      });
    });
  }
});
