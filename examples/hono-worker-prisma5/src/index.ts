// The canonical Hono + Prisma Accelerate app for Cloudflare Workers, as written for Prisma 5
// (`@prisma/client/edge`, generated with `prisma generate --no-engine`). Nothing here knows
// about tidepool: only DATABASE_URL points at it.
import { Hono } from 'hono'
import { PrismaClient } from '@prisma/client/edge'
import { withAccelerate } from '@prisma/extension-accelerate'

type Bindings = { DATABASE_URL: string }

const app = new Hono<{ Bindings: Bindings }>()

app.post('/users', async (c) => {
  const prisma = new PrismaClient({ datasourceUrl: c.env.DATABASE_URL }).$extends(withAccelerate())
  const { name, email, password } = await c.req.json()
  try {
    const user = await prisma.user.create({ data: { name, email, password } })
    return c.json(user, 201)
  } catch (e: any) {
    if (e.code === 'P2002') return c.json({ error: 'email already taken' }, 409)
    throw e
  }
})

app.get('/users', async (c) => {
  const prisma = new PrismaClient({ datasourceUrl: c.env.DATABASE_URL }).$extends(withAccelerate())
  const users = await prisma.user.findMany({ orderBy: { id: 'asc' }, cacheStrategy: { ttl: 0 } })
  return c.json(users)
})

export default app
