import { defineConfig } from 'prisma/config'

// Only `prisma generate` is used (offline); the client reaches the database through
// @prisma/adapter-neon, so no datasource URL is needed here.
export default defineConfig({
  schema: 'prisma/schema.prisma',
})
