import { Hono } from 'hono'
import { withAccelerate } from '@prisma/extension-accelerate'
import { PrismaClient, Prisma } from './generated/prisma/client'

type Bindings = {
  // prisma+postgres://HOST:PORT/?api_key=KEY — tidepool's Prisma endpoint.
  // Plain http is used only when HOST contains localhost/127.0.0.1/[::1].
  DATABASE_URL: string
}

function makeClient(accelerateUrl: string) {
  return new PrismaClient({ accelerateUrl }).$extends(withAccelerate())
}

// One client per isolate and URL: it keeps the compiled-plan cache and does
// the /connection-info handshake once.
let cached: { url: string; client: ReturnType<typeof makeClient> } | undefined
function prisma(url: string) {
  if (!cached || cached.url !== url) cached = { url, client: makeClient(url) }
  return cached.client
}

// Never store plain passwords: PBKDF2-SHA256 via Web Crypto (available in workerd).
async function hashPassword(password: string): Promise<string> {
  const iterations = 100_000
  const salt = crypto.getRandomValues(new Uint8Array(16))
  const key = await crypto.subtle.importKey('raw', new TextEncoder().encode(password), 'PBKDF2', false, ['deriveBits'])
  const bits = await crypto.subtle.deriveBits({ name: 'PBKDF2', hash: 'SHA-256', salt, iterations }, key, 256)
  const b64 = (b: ArrayBuffer | Uint8Array) => btoa(String.fromCharCode(...new Uint8Array(b)))
  return `pbkdf2-sha256$${iterations}$${b64(salt)}$${b64(bits)}`
}

const app = new Hono<{ Bindings: Bindings }>()

app.get('/', (c) => c.text('POST / with {"name","email","password"} to create a user\n'))

app.post('/', async (c) => {
  const body = await c.req.json().catch(() => null)
  const { name, email, password } = (body ?? {}) as Record<string, unknown>
  if (typeof name !== 'string' || typeof email !== 'string' || typeof password !== 'string' || !name || !email || !password) {
    return c.json({ error: 'expected JSON {"name","email","password"} (non-empty strings)' }, 400)
  }
  try {
    const user = await prisma(c.env.DATABASE_URL).user.create({
      data: { name, email, password: await hashPassword(password) },
      omit: { password: true },
    })
    return c.json(user, 201)
  } catch (e) {
    if (e instanceof Prisma.PrismaClientKnownRequestError && e.code === 'P2002') {
      return c.json({ error: 'email already registered', code: e.code }, 409)
    }
    const code = e instanceof Prisma.PrismaClientKnownRequestError ? e.code : undefined
    console.error('create user failed', e)
    return c.json({ error: 'could not create user', code }, 500)
  }
})

export default app
