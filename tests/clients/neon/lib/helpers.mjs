// Shared setup for the Neon driver suite: environment, driver configuration, the direct
// node-postgres oracle, and normalisation of results so the two can be compared.

import assert from 'node:assert/strict';
import pg from 'pg';
import ws from 'ws';
import { neon, neonConfig, Pool as NeonPool, Client as NeonClient } from '@neondatabase/serverless';

export const env = {
  http: process.env.TIDEPOOL_HTTP?.replace(/\/+$/, ''), // e.g. http://127.0.0.1:4466
  ws: process.env.TIDEPOOL_WS?.replace(/^wss?:\/\//, '').replace(/\/+$/, ''), // e.g. 127.0.0.1:4467
  directUrl: process.env.DIRECT_PG_URL, // the real PostgreSQL tidepool fronts
  connString: process.env.TIDEPOOL_CONN_STRING, // postgres://user:pass@host/db for Neon-Connection-String
  maxBytes: Number(process.env.TIDEPOOL_MAX_BYTES ?? 10 * 1024 * 1024),
};

/** `describe` options: skip with a reason when the suite is not pointed at a server. */
export function needs(...keys) {
  const missing = keys.filter((k) => !env[k]);
  const names = { http: 'TIDEPOOL_HTTP', ws: 'TIDEPOOL_WS', directUrl: 'DIRECT_PG_URL', connString: 'TIDEPOOL_CONN_STRING' };
  return missing.length ? { skip: `set ${missing.map((k) => names[k]).join(', ')}` } : {};
}

/** Points the driver at tidepool. Global state, so each test file (a separate process) sets it once. */
export function configureDriver() {
  if (env.http) neonConfig.fetchEndpoint = `${env.http}/sql`;
  if (env.ws) neonConfig.wsProxy = (_host) => `${env.ws}/v2`;
  neonConfig.webSocketConstructor = ws; // Node 20 has no global WebSocket
  neonConfig.useSecureWebSocket = false;
  neonConfig.pipelineConnect = 'password';
}

// The session settings tidepool pins on its upstream connections; the direct connection uses the
// same so that text output (timestamptz offsets, interval style) is identical.
const PINNED = '-c TimeZone=UTC -c DateStyle=ISO,MDY -c IntervalStyle=postgres -c bytea_output=hex';

export function directPool() {
  return new pg.Pool({ connectionString: env.directUrl, max: 4, options: PINNED });
}

export { neon, neonConfig, NeonPool, NeonClient, pg };

/**
 * Turns driver results into plain data. The Neon driver bundles its own pg-types, so Dates,
 * Buffers and intervals come from different classes than node-postgres'.
 */
export function normalize(value) {
  if (value === undefined || value === null) return null;
  if (value instanceof Date) {
    return { $date: Number.isNaN(value.getTime()) ? 'Invalid Date' : value.toISOString() };
  }
  if (value instanceof Uint8Array) return { $bytes: Buffer.from(value).toString('hex') };
  if (Array.isArray(value)) return value.map(normalize);
  if (typeof value === 'object') {
    if (typeof value.toPostgres === 'function') return { $interval: value.toPostgres() };
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, normalize(v)]));
  }
  if (typeof value === 'bigint') return { $bigint: value.toString() };
  return value;
}

export function plainFields(fields) {
  return (fields ?? []).map((f) => ({
    name: f.name,
    tableID: f.tableID,
    columnID: f.columnID,
    dataTypeID: f.dataTypeID,
    dataTypeSize: f.dataTypeSize,
    dataTypeModifier: f.dataTypeModifier,
    format: f.format,
  }));
}

/** The parts of a result both drivers produce with the same meaning. */
export function comparable(result) {
  return {
    command: result.command,
    rowCount: result.rowCount ?? null,
    fields: plainFields(result.fields),
    rows: normalize(result.rows),
  };
}

export const ERROR_FIELDS = [
  'message', 'severity', 'code', 'detail', 'hint', 'position', 'internalPosition', 'internalQuery',
  'where', 'schema', 'table', 'column', 'dataType', 'constraint', 'file', 'line', 'routine',
];

/** The PostgreSQL error fields of a NeonDbError or a node-postgres DatabaseError. */
export function errorFields(err) {
  assert.ok(err, 'expected an error');
  const fields = Object.fromEntries(ERROR_FIELDS.map((k) => [k, err[k] ?? null]));
  // The two sides consume different serial values: "Failing row contains (14, …)".
  if (typeof fields.detail === 'string') {
    fields.detail = fields.detail.replace(/^Failing row contains \(\d+,/, 'Failing row contains (<id>,');
  }
  return fields;
}

/** Runs `fn`, which must reject, and returns the error. */
export async function rejection(fn) {
  try {
    await fn();
  } catch (err) {
    return err;
  }
  assert.fail('expected the query to fail');
}

/** Asserts both errors carry the same PostgreSQL fields (file/line may differ only if servers do). */
export function assertSameError(actual, expected, label = '') {
  assert.deepEqual(errorFields(actual), errorFields(expected), label);
}

/** One value of each type the suite exercises: [label, SQL expression using $1, parameter]. */
export const TYPE_CASES = [
  ['int2', '$1::int2', 32767],
  ['int4', '$1::int4', -2147483648],
  ['int8 (string)', '$1::int8', '9007199254740993'],
  ['int8 (bigint)', '$1::int8', 9223372036854775807n],
  ['numeric', '$1::numeric', '12345.678901234567890'],
  ['numeric NaN', '$1::numeric', 'NaN'],
  ['float4', '$1::float4', 1.5],
  ['float8', '$1::float8', 0.1],
  ['float8 NaN', '$1::float8', NaN],
  ['float8 Infinity', '$1::float8', Infinity],
  ['float8 -Infinity', '$1::float8', -Infinity],
  ['bool true', '$1::bool', true],
  ['bool false', '$1::bool', false],
  ['text', '$1::text', 'héllo "quoted" \\ back\nslash ✓'],
  ['text empty', '$1::text', ''],
  ['untyped param is text', '$1', 42],
  ['varchar', '$1::varchar(10)', 'abc'],
  ['uuid', '$1::uuid', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'],
  ['json', '$1::json', { a: 1, b: [true, null], 'k y': 'v' }],
  ['jsonb', '$1::jsonb', { nested: { deep: [1, 2.5, 'x'] } }],
  ['jsonb scalar', '$1::jsonb', '"just a string"'],
  ['int4[] with NULL', '$1::int4[]', [1, null, 3]],
  ['int4[][]', '$1::int4[]', [[1, 2], [3, 4]]],
  ['int8[]', '$1::int8[]', ['1', '9223372036854775807']],
  ['text[] quoting', '$1::text[]', ['a', 'b c', '"q"', 'back\\slash', '', 'NULL', null, '{x}', 'a,b']],
  ['bool[]', '$1::bool[]', [true, false, null]],
  ['float8[]', '$1::float8[]', [1.5, NaN, -Infinity]],
  ['jsonb[]', '$1::jsonb[]', ['{"x": 1}', 'null']],
  ['empty int4[]', '$1::int4[]', []],
  ['timestamptz', '$1::timestamptz', new Date('2024-01-02T03:04:05.678Z')],
  ['timestamp', '$1::timestamp', '2024-01-02 03:04:05.678'],
  ['date', '$1::date', '2024-01-02'],
  ['time', '$1::time', '03:04:05.123456'],
  ['timetz', '$1::timetz', '03:04:05+05:30'],
  ['interval', '$1::interval', '1 day 2 hours 3.5 seconds'],
  ['interval negative', '$1::interval', '-1 year -2 mons +3 days'],
  ['bytea', '$1::bytea', Buffer.from([0x00, 0x01, 0xfe, 0xff])],
  ['inet', '$1::inet', '192.168.0.1/24'],
  ['money', '$1::numeric::money', '12.34'],
  ['NULL int4', '$1::int4', null],
  ['NULL text', '$1::text', null],
];

/** A table with one column of most types, created (fresh) through the direct connection. */
export function itemsTableSql(table) {
  return `
    DROP TABLE IF EXISTS ${table};
    CREATE TABLE ${table} (
      id serial PRIMARY KEY,
      name text NOT NULL UNIQUE,
      qty int4 CHECK (qty >= 0),
      big int8,
      price numeric(12, 4),
      ratio float8,
      ok bool,
      data jsonb,
      tags text[],
      created timestamptz,
      day date,
      blob bytea,
      uid uuid
    );`;
}

/** The role tidepool connects as (from TIDEPOOL_CONN_STRING), quoted for SQL. */
export function tidepoolRole() {
  const user = decodeURIComponent(new URL(env.connString).username);
  return `"${user.replace(/"/g, '""')}"`;
}

/**
 * Lets the role behind TIDEPOOL_CONN_STRING use tables the direct connection created (the two
 * URLs may name different roles). Harmless when they are the same role.
 */
export function grantSql(...tables) {
  return tables
    .map((t) => `GRANT ALL ON TABLE ${t} TO ${tidepoolRole()}; GRANT ALL ON SEQUENCE ${t}_id_seq TO ${tidepoolRole()};`)
    .join('\n');
}

export const ITEM_COLUMNS = 'name, qty, big, price, ratio, ok, data, tags, created, day, blob, uid';

export function itemValues(name) {
  return [
    name,
    7,
    '9007199254740993',
    '1234.5678',
    2.5,
    true,
    { k: [1, 2], s: 'x' },
    ['a', 'b c', null],
    new Date('2024-05-06T07:08:09.123Z'),
    '2024-05-06',
    Buffer.from('0001ff', 'hex'),
    'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
  ];
}
