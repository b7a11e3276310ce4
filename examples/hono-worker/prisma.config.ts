import { defineConfig } from 'prisma/config'

// Only `prisma generate` is used here; the Worker reaches the database through
// tidepool's Accelerate-compatible endpoint (wrangler.toml DATABASE_URL).
export default defineConfig({
  schema: 'prisma/schema.prisma',
})
