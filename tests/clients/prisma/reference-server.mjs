// Starts Prisma's reference server for the Accelerate/remote-executor protocol
// (@prisma/query-plan-executor) on a local port, in front of a Postgres URL.
//
//   DATABASE_URL=postgresql://... PORT=4466 node reference-server.mjs
//
// The package is a Hono app without a listener of its own: we mount its fetch
// handler with @hono/node-server. It needs a global OpenTelemetry context
// manager and an active logger, otherwise its error path fails with
// "No active logger found".
import { context } from '@opentelemetry/api'
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks'
import { serve } from '@hono/node-server'
import {
  Server,
  createConsoleLogger,
  parseDuration,
  parseSize,
  withActiveLogger,
} from '@prisma/query-plan-executor'

const databaseUrl = process.env.DATABASE_URL
if (!databaseUrl) {
  console.error('reference-server: DATABASE_URL is required')
  process.exit(2)
}
const port = Number(process.env.PORT ?? 4466)
const host = process.env.HOST ?? '127.0.0.1'
const logLevel = process.env.REFERENCE_LOG_LEVEL ?? 'warn'

context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable())

await withActiveLogger(createConsoleLogger('text', logLevel), async () => {
  const server = await Server.create({
    databaseUrl,
    queryTimeout: parseDuration(process.env.REFERENCE_QUERY_TIMEOUT ?? 'PT30S'),
    maxTransactionTimeout: parseDuration(process.env.REFERENCE_MAX_TX_TIMEOUT ?? 'PT60S'),
    maxTransactionWaitTime: parseDuration(process.env.REFERENCE_MAX_TX_WAIT ?? 'PT10S'),
    maxResponseSize: parseSize(process.env.REFERENCE_MAX_RESPONSE_SIZE ?? '64 MiB'),
  })
  const http = serve({ fetch: server.fetch, port, hostname: host }, (info) => {
    console.log(`reference-server: listening on http://${host}:${info.port}`)
  })
  const stop = async () => {
    http.close()
    await server.shutdown()
    process.exit(0)
  }
  process.on('SIGINT', stop)
  process.on('SIGTERM', stop)
  await new Promise(() => {})
})
