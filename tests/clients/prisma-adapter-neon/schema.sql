-- Tables of prisma/schema.prisma as `prisma migrate` would create them (same names, types,
-- constraint names), applied by smoke.mjs through the direct PostgreSQL connection.
DROP TABLE IF EXISTS "Book";
DROP TABLE IF EXISTS "Author";

CREATE TABLE "Author" (
    "id" SERIAL NOT NULL,
    "email" TEXT NOT NULL,
    "name" TEXT NOT NULL,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT "Author_pkey" PRIMARY KEY ("id")
);
CREATE UNIQUE INDEX "Author_email_key" ON "Author"("email");

CREATE TABLE "Book" (
    "id" SERIAL NOT NULL,
    "title" TEXT NOT NULL,
    "pages" INTEGER NOT NULL DEFAULT 0,
    "price" DECIMAL(10,2),
    "authorId" INTEGER NOT NULL,
    CONSTRAINT "Book_pkey" PRIMARY KEY ("id")
);
ALTER TABLE "Book" ADD CONSTRAINT "Book_authorId_fkey" FOREIGN KEY ("authorId")
    REFERENCES "Author"("id") ON DELETE CASCADE ON UPDATE CASCADE;
