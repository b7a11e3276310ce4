// Session state in transaction mode over WebSocket (docs/protocols.md "Session state in
// transaction mode"): the driver's Client and Pool keep SET, temp tables, PREPARE/EXECUTE and
// LISTEN/NOTIFY across transactions as node-postgres does straight to PostgreSQL.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { env, needs, configureDriver, directPool, NeonPool, NeonClient, pg } from '../lib/helpers.mjs';

/** The same session script on any node-postgres-like client; returns what it saw. */
async function script(c) {
  const seen = [];
  const one = async (sql) => (await c.query(sql)).rows.map((r) => Object.values(r).join('|'));
  await c.query('SET search_path = pg_catalog, public');
  seen.push(...(await one('SHOW search_path')));
  await c.query('BEGIN');
  await c.query("SET search_path = 'public'");
  await c.query('ROLLBACK');
  seen.push(...(await one('SHOW search_path')));
  await c.query('CREATE TEMP TABLE sess_tmp AS SELECT 7 AS x');
  seen.push(...(await one('SELECT x FROM sess_tmp')));
  await c.query('PREPARE sess_p (int) AS SELECT $1 + 1');
  seen.push(...(await one('EXECUTE sess_p(41)')));
  await c.query('DEALLOCATE sess_p');
  await c.query('DROP TABLE sess_tmp');
  return seen;
}

describe('session state over WebSocket (Client and Pool)', needs('ws', 'directUrl', 'connString'), () => {
  let want;

  before(async () => {
    configureDriver();
    const direct = new pg.Client({ connectionString: env.directUrl });
    await direct.connect();
    want = await script(direct);
    await direct.end();
  });

  it('Client: SET, temp table and PREPARE survive transactions as on a direct connection', async () => {
    const c = new NeonClient({ connectionString: env.connString });
    await c.connect();
    try {
      assert.deepEqual(await script(c), want);
    } finally {
      await c.end();
    }
  });

  it('Pool: a checked-out client keeps its session; another one does not see its SET', async () => {
    const pool = new NeonPool({ connectionString: env.connString, max: 2 });
    try {
      const a = await pool.connect();
      const b = await pool.connect();
      assert.deepEqual(await script(a), want);
      await a.query('SET search_path = pg_catalog');
      const seen = (await b.query('SHOW search_path')).rows[0].search_path;
      assert.notEqual(seen, 'pg_catalog');
      assert.equal((await a.query('SHOW search_path')).rows[0].search_path, 'pg_catalog');
      a.release(true);
      b.release(true);
    } finally {
      await pool.end();
    }
  });

  it('Client: LISTEN hears a NOTIFY sent while it is idle', async () => {
    const listener = new NeonClient({ connectionString: env.connString });
    await listener.connect();
    const direct = new pg.Client({ connectionString: env.directUrl });
    await direct.connect();
    try {
      const heard = new Promise((resolve) => listener.on('notification', resolve));
      await listener.query('LISTEN sess_chan');
      await direct.query("NOTIFY sess_chan, 'hello'");
      const n = await heard;
      assert.equal(n.channel, 'sess_chan');
      assert.equal(n.payload, 'hello');
    } finally {
      await direct.end();
      await listener.end();
    }
  });
});
