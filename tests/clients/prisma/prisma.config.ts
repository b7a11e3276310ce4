import { defineConfig } from 'prisma/config'

// Only `prisma generate` is used (offline); the URL is never contacted by it.
export default defineConfig({
  schema: 'prisma/schema.prisma',
  datasource: {
    url: process.env.DATABASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/prisma_dev',
  },
})
