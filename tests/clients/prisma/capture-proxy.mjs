// Tiny recording HTTP proxy for the Accelerate protocol.
//
//   TARGET=http://127.0.0.1:4466 PORT=4470 CAPTURE_OUT=capture.jsonl node capture-proxy.mjs
//
// Forwards every request to TARGET unchanged and appends one JSON line per
// exchange to CAPTURE_OUT: {seq, scenario, method, path, requestHeaders,
// requestBody, status, responseHeaders, responseBody}. Bodies are parsed as
// JSON when possible (raw text otherwise).
//
// Control endpoint (never forwarded): POST /__capture/scenario {"name": "..."}
// tags the following exchanges with that scenario name. The suite calls it
// when CAPTURE_CONTROL_URL is set.
import http from 'node:http'
import fs from 'node:fs'

const target = new URL(process.env.TARGET ?? 'http://127.0.0.1:4466')
const port = Number(process.env.PORT ?? 4470)
const out = process.env.CAPTURE_OUT ?? 'capture.jsonl'
let seq = 0
let scenario = null
let seed = null

// Transport headers added by Node's fetch; not part of the protocol.
const DROP = new Set(['connection', 'accept-language', 'sec-fetch-mode', 'accept-encoding', 'content-length', 'keep-alive', 'transfer-encoding', 'date'])
const pick = (headers) => Object.fromEntries(Object.entries(headers).filter(([k]) => !DROP.has(k.toLowerCase())))
const parse = (buf) => {
  if (buf.length === 0) return null
  const text = buf.toString('utf8')
  try { return JSON.parse(text) } catch { return { $rawText: text } }
}
const readAll = (stream) => new Promise((resolve, reject) => {
  const chunks = []
  stream.on('data', (c) => chunks.push(c))
  stream.on('end', () => resolve(Buffer.concat(chunks)))
  stream.on('error', reject)
})

const server = http.createServer(async (req, res) => {
  const body = await readAll(req)
  if (req.url === '/__capture/scenario' && req.method === 'POST') {
    const info = parse(body) ?? {}
    scenario = info.name ?? null
    seed = info.seed ?? null
    res.writeHead(200, { 'content-type': 'application/json' }).end('{}')
    return
  }
  const upstream = http.request({
    hostname: target.hostname, port: target.port, method: req.method, path: req.url,
    headers: { ...req.headers, host: target.host },
  }, async (ures) => {
    const rbody = await readAll(ures)
    const headers = { ...ures.headers }
    delete headers['transfer-encoding']
    headers['content-length'] = String(rbody.length)
    res.writeHead(ures.statusCode, headers).end(rbody)
    const entry = {
      seq: ++seq, scenario, seed, method: req.method, path: req.url,
      requestHeaders: pick(req.headers), requestBody: parse(body),
      status: ures.statusCode, responseHeaders: pick(ures.headers), responseBody: parse(rbody),
    }
    fs.appendFileSync(out, JSON.stringify(entry) + '\n')
  })
  upstream.on('error', (err) => {
    res.writeHead(502, { 'content-type': 'application/json' }).end(JSON.stringify({ error: `capture-proxy: ${err.message}` }))
  })
  upstream.end(body)
})
server.listen(port, '127.0.0.1', () => console.log(`capture-proxy: http://127.0.0.1:${port} -> ${target.origin}, writing ${out}`))
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => server.close(() => process.exit(0)))
