// Compare two RESULTS_OUT files from suite.mjs (e.g. reference executor vs
// tidepool) scenario by scenario, record by record.
//
//   node diff.mjs results-reference.json results-tidepool.json
//
// Exit 0 when every scenario present in either file has the same status and
// deep-equal records (object key order ignored), 1 otherwise. Prints at most
// DIFF_MAX_LINES (default 40) differing paths per record.
import fs from 'node:fs'

const [aPath, bPath] = process.argv.slice(2)
if (!aPath || !bPath) {
  console.error('usage: node diff.mjs A.json B.json')
  process.exit(2)
}
const A = JSON.parse(fs.readFileSync(aPath, 'utf8'))
const B = JSON.parse(fs.readFileSync(bPath, 'utf8'))
const maxLines = Number(process.env.DIFF_MAX_LINES ?? 40)

const show = (v) => {
  const s = JSON.stringify(v)
  return s === undefined ? 'undefined' : s.length > 160 ? s.slice(0, 157) + '...' : s
}
function diffValues(a, b, path, out) {
  if (out.length >= maxLines) return
  if (a === b) return
  const ta = Array.isArray(a) ? 'array' : a === null ? 'null' : typeof a
  const tb = Array.isArray(b) ? 'array' : b === null ? 'null' : typeof b
  if (ta !== tb || (ta !== 'object' && ta !== 'array')) {
    out.push(`${path || '<root>'}: ${show(a)} != ${show(b)}`)
    return
  }
  if (ta === 'array') {
    if (a.length !== b.length) out.push(`${path}: length ${a.length} != ${b.length}`)
    for (let i = 0; i < Math.min(a.length, b.length); i++) diffValues(a[i], b[i], `${path}[${i}]`, out)
    return
  }
  for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) {
    if (!(k in a)) out.push(`${path}.${k}: missing in A, B has ${show(b[k])}`)
    else if (!(k in b)) out.push(`${path}.${k}: A has ${show(a[k])}, missing in B`)
    else diffValues(a[k], b[k], `${path}.${k}`, out)
  }
}

let same = 0
const differing = []
const names = [...new Set([...Object.keys(A.scenarios), ...Object.keys(B.scenarios)])]
for (const name of names) {
  const a = A.scenarios[name]
  const b = B.scenarios[name]
  const lines = []
  if (!a || !b) {
    lines.push(`only in ${a ? 'A' : 'B'}`)
  } else {
    if (a.status !== b.status) lines.push(`status: ${a.status} != ${b.status}${b.error ? ` (B: ${b.error})` : ''}${a.error ? ` (A: ${a.error})` : ''}`)
    const la = new Map(a.records.map(([l, v]) => [l, v]))
    const lb = new Map(b.records.map(([l, v]) => [l, v]))
    for (const label of new Set([...la.keys(), ...lb.keys()])) {
      if (!la.has(label) || !lb.has(label)) {
        lines.push(`record ${label}: only in ${la.has(label) ? 'A' : 'B'}`)
        continue
      }
      const out = []
      diffValues(la.get(label), lb.get(label), '', out)
      for (const l of out) lines.push(`record ${label}${l.startsWith('.') || l.startsWith('[') ? '' : ' '}${l}`)
    }
  }
  if (lines.length) differing.push([name, lines])
  else same++
}
for (const [name, lines] of differing) {
  console.log(`DIFF ${name}`)
  for (const l of lines) console.log(`     ${l}`)
}
console.log(`${same} same, ${differing.length} different (A=${aPath}, B=${bPath})`)
process.exit(differing.length ? 1 : 0)
