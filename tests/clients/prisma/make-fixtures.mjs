// Turn a capture-proxy.mjs recording (JSON lines) into fixture files:
//   fixtures/<scenario>.json   one per scenario, exchanges in order
//   fixtures/index.json        list of fixtures with their operations
//
//   node make-fixtures.mjs capture.jsonl fixtures
//
// Each fixture: {scenario, seed, replay, exchanges:[{method, path, headers,
// body, response:{status, headers, body}}]}. To replay one: recreate the tables
// from schema.sql, TRUNCATE ... RESTART IDENTITY, load seed.sql if `seed` is
// true, then send the exchanges in order. Values produced by generators
// (uuid()/cuid()/now() defaults) and server-side timestamps differ between runs,
// and later requests of a scenario may carry such ids in `params`.
import fs from 'node:fs'
import path from 'node:path'

const [input = 'capture.jsonl', outDir = 'fixtures'] = process.argv.slice(2)
const lines = fs.readFileSync(input, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l))
  // the harness's own liveness probes are not client traffic
  .filter((e) => e.path !== '/health')

// Reference-executor responses can carry server stack traces in
// extensions.logs; they are environment-specific, so shorten them.
const scrub = (body) => {
  if (!body || typeof body !== 'object' || !body.extensions?.logs) return body
  const logs = body.extensions.logs.map((log) => {
    const attrs = { ...(log.attributes ?? {}) }
    for (const k of Object.keys(attrs)) {
      if (typeof attrs[k] === 'string' && /\n\s+at /.test(attrs[k])) attrs[k] = attrs[k].split('\n')[0] + '\n    at … (stack elided)'
    }
    return { ...log, attributes: attrs }
  })
  return { ...body, extensions: { ...body.extensions, logs } }
}

const byScenario = new Map()
for (const e of lines) {
  const name = e.scenario ?? '_unlabelled'
  if (!byScenario.has(name)) byScenario.set(name, [])
  byScenario.get(name).push(e)
}

fs.rmSync(outDir, { recursive: true, force: true })
fs.mkdirSync(outDir, { recursive: true })
const index = []
for (const [name, entries] of byScenario) {
  const file = name.replace(/[^A-Za-z0-9._-]+/g, '__') + '.json'
  const exchanges = entries.map((e) => ({
    method: e.method,
    path: e.path,
    headers: Object.fromEntries(Object.entries(e.requestHeaders).filter(([k]) => k !== 'host')),
    body: e.requestBody,
    response: { status: e.status, headers: e.responseHeaders, body: scrub(e.responseBody) },
  }))
  const fixture = {
    scenario: name,
    seed: entries[0].seed ?? null,
    replay: 'schema.sql, then TRUNCATE all tables RESTART IDENTITY, then seed.sql if seed is true; send exchanges in order. Generated ids/timestamps differ per run.',
    exchanges,
  }
  fs.writeFileSync(path.join(outDir, file), JSON.stringify(fixture, null, 1) + '\n')
  index.push({
    file, scenario: name, seed: fixture.seed, exchanges: exchanges.length,
    operations: exchanges.map((x) => `${x.method} ${x.path.replace(/[0-9a-f-]{36}/, '{id}')}${x.body?.operation ? ` ${x.body.model ?? ''}.${x.body.operation}` : ''} -> ${x.response.status}`),
  })
}
fs.writeFileSync(path.join(outDir, 'index.json'), JSON.stringify(index, null, 1) + '\n')
console.log(`make-fixtures: ${lines.length} exchanges, ${index.length} fixture files in ${outDir}/`)
