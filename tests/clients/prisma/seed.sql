-- Deterministic seed data loaded (over the direct DATABASE_URL) before every scenario
-- that declares `seed: true`. Fixtures record which scenarios used it.
INSERT INTO "User" ("id","name","email","password","role","nicknames","profile","balance","karma","avatar","birthday","createdAt","updatedAt") VALUES
 (1,'Alice','alice@example.com','pw-alice','ADMIN','{ally,al}','{"age":30,"city":"Paris","tags":["a","b"],"nested":{"level":1}}',100.50,9007199254740993,'\x010203','1990-01-15','2024-01-01 10:00:00','2024-01-01 10:00:00'),
 (2,'Bob','bob@example.com','pw-bob','USER','{bobby}','{"age":25,"city":"Berlin","tags":["b"]}',20.00,42,NULL,'1985-06-30','2024-01-02 10:00:00','2024-01-02 10:00:00'),
 (3,'Carol','carol@example.org','pw-carol','MODERATOR','{}','{"age":35,"city":"paris","vip":true}',NULL,0,'\xdeadbeef',NULL,'2024-01-03 10:00:00','2024-01-03 10:00:00'),
 (4,'dave','DAVE@Example.com','pw-dave','USER',NULL,NULL,-5.25,-7,NULL,NULL,'2024-01-04 10:00:00.123','2024-01-04 10:00:00.123');
SELECT setval(pg_get_serial_sequence('"User"','id'), 4);

INSERT INTO "Post" ("id","title","content","status","published","views","rating","metadata","keywords","authorId","createdAt") VALUES
 ('p1','Hello World','First post content','published',true,100,4.5,'{"lang":"en","score":10,"tags":["intro","hello"]}','{prisma,postgres}',1,'2024-02-01 09:00:00'),
 ('p2','Second post',NULL,'DRAFT',false,5,NULL,'{"lang":"fr","score":3}','{prisma}',1,'2024-02-02 09:00:00'),
 ('p3','Bob writes','Bob''s thoughts on databases','published',true,50,3.0,'{"lang":"en","draft":false}','{}',2,'2024-02-03 09:00:00'),
 ('p4','Draft by Bob','wip','DRAFT',false,0,NULL,NULL,NULL,2,'2024-02-04 09:00:00'),
 ('p5','Carol on Rust','Rust and Postgres, 100% safe','archived',true,75,5.0,'{"lang":"en","score":7,"extra":{"k":"v"}}','{rust,postgres}',3,'2024-02-05 09:00:00');

INSERT INTO "Comment" ("id","body","likes","postId","authorId","createdAt") VALUES
 ('c1','Nice post',3,'p1',2,'2024-03-01 08:00:00'),
 ('c2','Agreed',1,'p1',3,'2024-03-02 08:00:00'),
 ('c3','Good one',0,'p3',1,'2024-03-03 08:00:00'),
 ('c4','Anonymous comment',10,'p5',NULL,'2024-03-04 08:00:00'),
 ('c5','Rust!',2,'p5',1,'2024-03-05 08:00:00'),
 ('c6','Typo here',0,'p2',2,'2024-03-06 08:00:00');

INSERT INTO "Tag" ("id","name") VALUES (1,'prisma'),(2,'postgres'),(3,'rust'),(4,'misc');
SELECT setval(pg_get_serial_sequence('"Tag"','id'), 4);

INSERT INTO "_PostToTag" ("A","B") VALUES ('p1',1),('p1',2),('p2',1),('p3',2),('p5',2),('p5',3);

INSERT INTO "Sample" ("id","slug","kind","day","at","amount","counter","doc","data","blob","floats","ints","flags","roles","note") VALUES
 ('s1','sample-one','ADMIN','2024-05-06','2024-05-06 07:08:09.123456+00',12345.678901,-9223372036854775808,'{"b": 2, "a": 1}','{"k":[1,2,{"x":null}],"s":"é\"q"}','\x00ff10','{1.5,-2.25}','{1,2,3}','{t,f}','{USER,ADMIN}','short'),
 ('s2','sample-two','USER','1999-12-31','1999-12-31 23:59:59+00',0.000001,9223372036854775807,'[]','null','\x','{}','{}','{}','{}',NULL);
