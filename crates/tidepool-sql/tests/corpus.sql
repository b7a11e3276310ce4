-- case
set/**/search_path to leaked_schema
-- case
/* c */ SET search_path = x
-- case
-- leading comment
SET statement_timeout = 0
-- case
/* a /* nested */ still */ SET x.y = 1
-- case
SELECT 1; SET x.y = 1
-- case
select 1;set x.y=1;select 2
-- case
select set_config('a.b','c',false)
-- case
SELECT "set_config"('a.b','c',false)
-- case
select pg_catalog.set_config('search_path', 'x', false)
-- case
select "pg_catalog"."set_config"('search_path', 'x', false)
-- case
SELECT SET_CONFIG ('a.b', 'c', false)
-- case
select set_config/**/('a.b','c',false)
-- case
select * from set_config('a.b','c',false)
-- case
(select set_config('a.b','c',false))
-- case
select pg_advisory_lock(1)
-- case
select pg_advisory_lock_shared(1)
-- case
select pg_try_advisory_lock(1, 2)
-- case
select pg_try_advisory_lock_shared(1)
-- case
select pg_advisory_unlock(1)
-- case
select pg_advisory_unlock_all()
-- case
select dblink_connect('c', 'dbname=x')
-- case
select dblink_connect_u('dbname=x')
-- case
SELECT $$ ; $$; SET x.y = 1
-- case
SELECT $a$ $$ ; $a$; SET x.y = 1
-- case
SELECT $1; SET x.y = 1
-- case
SELECT 'a'; SET x.y = 'b'
-- case
SELECT E'\\'; SET x.y = 1
-- case
SELECT E'a'
'\'' ; SET x.y = 1; --'
-- case
SELECT '\'; SET x.y = 1; --'
-- case
SET SESSION statement_timeout TO '5s'
-- case
SET TIME ZONE 'UTC'
-- case
SET TIME ZONE LOCAL
-- case
SET TIME ZONE INTERVAL '+02:00' HOUR TO MINUTE
-- case
SET SCHEMA 'public'
-- case
SET NAMES 'UTF8'
-- case
SET XML OPTION DOCUMENT
-- case
SET ROLE bob
-- case
SET ROLE NONE
-- case
SET SESSION ROLE bob
-- case
SET SESSION AUTHORIZATION bob
-- case
SET SESSION AUTHORIZATION DEFAULT
-- case
SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE
-- case
SET work_mem FROM CURRENT
-- case
SET search_path TO DEFAULT
-- case
SET search_path = "$user", public
-- case
set "search_path" to x
-- case
SET role = 'bob'
-- case
RESET ALL
-- case
RESET search_path
-- case
RESET TIME ZONE
-- case
RESET SESSION AUTHORIZATION
-- case
RESET ROLE
-- case
LISTEN chan
-- case
LISTEN "Chan With Spaces"
-- case
PREPARE p AS SELECT 1
-- case
PREPARE p (int, text) AS SELECT $1, $2
-- case
PREPARE transaction AS SELECT 1
-- case
DEALLOCATE ALL
-- case
DEALLOCATE PREPARE p
-- case
DEALLOCATE p
-- case
DISCARD ALL
-- case
DISCARD PLANS
-- case
DISCARD SEQUENCES
-- case
DISCARD TEMP
-- case
DECLARE c CURSOR WITH HOLD FOR SELECT 1
-- case
DECLARE c BINARY INSENSITIVE NO SCROLL CURSOR WITH HOLD FOR SELECT * FROM t
-- case
CREATE TEMP TABLE t (a int)
-- case
CREATE TEMPORARY TABLE IF NOT EXISTS t (a int) ON COMMIT DROP
-- case
CREATE TEMP TABLE t AS SELECT 1 AS a
-- case
CREATE GLOBAL TEMPORARY TABLE t (a int)
-- case
CREATE LOCAL TEMP TABLE t (a int)
-- case
CREATE TEMP SEQUENCE s START 1
-- case
CREATE TEMPORARY VIEW v AS SELECT 1
-- case
CREATE OR REPLACE TEMP VIEW v AS SELECT 1
-- case
CREATE TEMP RECURSIVE VIEW v (n) AS VALUES (1)
-- case
CREATE TEMP TABLE t (LIKE x INCLUDING ALL)
-- case
SELECT 1 AS a INTO TEMP t
-- case
SELECT * INTO TEMPORARY TABLE t FROM x
-- case
SELECT * INTO LOCAL TEMP t FROM x
-- case
select a, b into temporary t from x where a > 1
-- case
WITH q AS (SELECT 1) SELECT * INTO TEMP t FROM q
-- case
LOAD 'auto_explain'
-- case
DO $$BEGIN PERFORM set_config('a.b', 'c', false); END$$
-- case
DO LANGUAGE plpgsql $body$ BEGIN EXECUTE 'SET search_path = x'; END $body$
-- case
DO 'BEGIN END'
-- case
CALL proc(1)
-- case
CALL myschema.proc()
-- case
EXPLAIN ANALYZE CREATE TEMP TABLE t AS SELECT 1
-- case
EXPLAIN (ANALYZE, BUFFERS) SELECT 1 INTO TEMP t
-- case
EXPLAIN ANALYZE SELECT set_config('a.b','c',false)
-- case
EXPLAIN EXECUTE p
-- case
SELECT (SELECT set_config('a.b','c',false))
-- case
INSERT INTO t SELECT pg_advisory_lock(1)
-- case
UPDATE t SET a = set_config('x.y', 'z', false)
-- case
SELECT * FROM t WHERE x = 1 AND pg_try_advisory_lock(id)
-- case
WITH a AS (SELECT pg_advisory_lock(1)) SELECT * FROM a
-- case
SELECT 1;
SELECT 2;
SET LOCAL a.b = 1;
SET a.b = 2;
-- case
BEGIN; SET search_path = x; COMMIT
-- case
BEGIN; LISTEN c; COMMIT
-- case
SELECT 1 /* ; */ ; SET x.y = 1
-- case
SELECT U&'\0041' ; SET x.y = 1
-- case
SELECT B'1', X'f'; RESET ALL
-- case
select 'it''s'; set x.y = 1
-- case
SELECT 1
-- case
(select 1)
-- case
((select 1) union (select 2))
-- case
SELECT a, b FROM t WHERE c = 'set x = 1'
-- case
UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = 1
-- case
update t set a = 1
-- case
UPDATE t SET (a, b) = (1, 2) WHERE c = 3
-- case
SET LOCAL statement_timeout = 5
-- case
set local search_path to x
-- case
SET LOCAL ROLE bob
-- case
SET LOCAL SESSION AUTHORIZATION bob
-- case
SET TRANSACTION ISOLATION LEVEL SERIALIZABLE
-- case
SET TRANSACTION READ ONLY, DEFERRABLE
-- case
SET TRANSACTION SNAPSHOT '00000003-0000001B-1'
-- case
SET SESSION TRANSACTION READ ONLY
-- case
BEGIN; SET TRANSACTION ISOLATION LEVEL SERIALIZABLE; COMMIT
-- case
SET CONSTRAINTS ALL DEFERRED
-- case
SET CONSTRAINTS a, b IMMEDIATE
-- case
SHOW search_path
-- case
SHOW ALL
-- case
select pg_advisory_xact_lock(1)
-- case
select pg_try_advisory_xact_lock_shared(1)
-- case
insert into settings(a) values ('set x')
-- case
insert into settings values ('set x'); select 1
-- case
select temp from readings
-- case
select * from t where name = 'into'
-- case
insert into temp_readings select 1
-- case
INSERT INTO t (a) VALUES ('reset all') RETURNING a
-- case
select 'set_config(1)', $$ set x = 1; $$, $t$ reset all $t$
-- case
select 1 -- ; set x = 1
-- case
select /* ; set x = 1 */ 1
-- case
SELECT E'\'; SET x = 1; --'
-- case
select a into t from b
-- case
select a into unlogged t from b
-- case
NOTIFY chan, 'SET x = 1'
-- case
SELECT pg_notify('chan', 'payload')
-- case
UNLISTEN *
-- case
UNLISTEN chan
-- case
EXECUTE p(1)
-- case
CLOSE c
-- case
CLOSE ALL
-- case
DECLARE c CURSOR FOR SELECT 1
-- case
DECLARE c CURSOR WITHOUT HOLD FOR SELECT * FROM t
-- case
FETCH 10 FROM c
-- case
MOVE NEXT IN c
-- case
CREATE TABLE t (a int)
-- case
CREATE UNLOGGED TABLE t (a int)
-- case
CREATE TABLE tmp AS SELECT 1
-- case
CREATE VIEW temp_view AS SELECT 1
-- case
CREATE FUNCTION f() RETURNS int LANGUAGE sql SET search_path = x AS 'select 1'
-- case
CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$ BEGIN SET search_path = x; END $$
-- case
ALTER ROLE bob SET search_path = x
-- case
ALTER DATABASE d SET work_mem = '64MB'
-- case
ALTER FUNCTION f() SET search_path = x
-- case
ALTER TABLE t ALTER COLUMN a SET DEFAULT 1
-- case
ALTER TABLE t SET (fillfactor = 70)
-- case
PREPARE TRANSACTION 'gid'
-- case
COMMIT PREPARED 'gid'
-- case
ROLLBACK PREPARED 'gid'
-- case
START TRANSACTION; SAVEPOINT s; RELEASE s; ROLLBACK TO SAVEPOINT s; END
-- case
BEGIN ISOLATION LEVEL REPEATABLE READ
-- case
ABORT
-- case
COPY t FROM STDIN
-- case
COPY (SELECT 1) TO STDOUT WITH (FORMAT csv)
-- case
WITH x AS (SELECT 1) SELECT * FROM x
-- case
WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 10) SELECT * FROM r
-- case
VALUES (1), (2)
-- case
TABLE t
-- case
VACUUM ANALYZE t
-- case
EXPLAIN SELECT 1
-- case
EXPLAIN (ANALYZE, BUFFERS, FORMAT json) SELECT * FROM t
-- case
select a$$b from t
-- case
SELECT $1::int, $2::text
-- case
SELECT "id", "email" FROM "public"."User" WHERE "email" = $1 LIMIT $2 OFFSET $3
-- case
INSERT INTO "public"."Post" ("title","authorId") VALUES ($1,$2) RETURNING "public"."Post"."id"
-- case
SELECT t0.id, t0."createdAt" FROM "Order" AS t0 WHERE (t0.status = ANY($1)) ORDER BY t0.id DESC
-- case
select count(*) from pg_stat_activity where state = 'idle in transaction'
-- case
SELECT current_setting('search_path'), pg_backend_pid()
-- case
SELECT nextval('s'), now(), random()
-- case
SELECT 'a'
'b'
-- case
SELECT 'a' -- comment
'b'
-- case
SELECT U&'d\0061t\+000061' UESCAPE '\'
-- case
SELECT U&"d\0061t" FROM t
-- case
SELECT 1.5e3, .5, 1_000, 0x1F
-- case
SELECT a::text[] FROM t WHERE b @> ARRAY[1,2] AND c <= 3 AND d <> 4
-- case
SELECT '{"a": "set x"}'::jsonb -> 'a'
-- case
LOCK TABLE t IN ACCESS EXCLUSIVE MODE
-- case
TRUNCATE t
-- case
DROP TABLE IF EXISTS t
-- case
GRANT SELECT ON t TO bob
-- case
REFRESH MATERIALIZED VIEW mv
-- case
MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET v = s.v
