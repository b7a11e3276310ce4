// Runs the Worker (src/index.ts, unchanged) under Node: the same fetch handler, with the
// environment passed as the Worker's bindings. Used because workerd cannot be told to trust a
// local CA, and Prisma 5 only speaks https to tidepool (see README.md).
import { serve } from '@hono/node-server'
import app from './src/index.ts'

const port = Number(process.env.PORT ?? 8787)
serve({ fetch: (req) => app.fetch(req, { DATABASE_URL: process.env.DATABASE_URL }), port, hostname: '127.0.0.1' }, (info) => {
  console.log(`listening on http://127.0.0.1:${info.port}`)
})
