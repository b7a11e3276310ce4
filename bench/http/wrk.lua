-- wrk script for bench/http/run.sh: POSTs a JSON body read from a file, with
-- one optional placeholder replaced per request, and checks every response.
--
--   wrk ... -s wrk.lua URL -- BODY_FILE TAG ID_MAX EXPECT
--
--   BODY_FILE  request body; may contain ONE of
--                __ID__   -> a random integer in 1..ID_MAX (point lookups)
--                __SEQ__  -> TAG-<thread>-<counter>, unique per request (inserts)
--                __N__    -> a positive integer unique per request (new query shapes)
--   TAG        distinguishes runs that share a database (unique values)
--   ID_MAX     upper bound for __ID__
--   EXPECT     substring every 200 body must contain ("" = no check)
-- Headers (Authorization, Content-Type, ...) come from wrk's -H options.
--
-- A response counts as good only when its status is 200 and its body contains
-- EXPECT; wrk's own latency/throughput numbers include the bad ones, so
-- run.sh reports the counts next to them and flags any run with errors.
-- done() prints one machine-readable line starting with "WRK_RESULT".

local threads = {}
local next_tid = 0

function setup(thread)
   next_tid = next_tid + 1
   thread:set("tid", next_tid)
   table.insert(threads, thread)
end

local prefix, suffix, mode
local counter = 0
local id_max = 1
local tag = "x"
local expect = nil
bad_status = 0
bad_body = 0
first_bad = ""

function init(args)
   local f = assert(io.open(args[1], "rb"))
   local body = f:read("*a")
   f:close()
   tag = args[2] or "x"
   id_max = tonumber(args[3] or "1") or 1
   if args[4] ~= nil and args[4] ~= "" then expect = args[4] end
   for _, p in ipairs({ "__ID__", "__SEQ__", "__N__" }) do
      local s, e = string.find(body, p, 1, true)
      if s then
         mode = p
         prefix = string.sub(body, 1, s - 1)
         suffix = string.sub(body, e + 1)
         break
      end
   end
   if mode == nil then
      prefix = body
      suffix = ""
   end
   wrk.method = "POST"
   math.randomseed(os.time() * 1000 + (tid or 0))
end

function request()
   local body
   if mode == "__ID__" then
      body = prefix .. math.random(1, id_max) .. suffix
   elseif mode == "__SEQ__" then
      counter = counter + 1
      body = prefix .. tag .. "-" .. tostring(tid) .. "-" .. counter .. suffix
   elseif mode == "__N__" then
      counter = counter + 1
      body = prefix .. tostring((tid or 0) * 100000000 + counter) .. suffix
   else
      body = prefix
   end
   return wrk.format("POST", nil, nil, body)
end

function response(status, headers, body)
   if status ~= 200 then
      bad_status = bad_status + 1
      if first_bad == "" then first_bad = status .. " " .. string.sub(body or "", 1, 300) end
   elseif expect ~= nil and not string.find(body or "", expect, 1, true) then
      bad_body = bad_body + 1
      if first_bad == "" then first_bad = "200 " .. string.sub(body or "", 1, 300) end
   end
end

function done(summary, latency, requests)
   local bs, bb, sample = 0, 0, ""
   for _, t in ipairs(threads) do
      bs = bs + (t:get("bad_status") or 0)
      bb = bb + (t:get("bad_body") or 0)
      local fb = t:get("first_bad") or ""
      if sample == "" and fb ~= "" then sample = fb end
   end
   local e = summary.errors
   local secs = summary.duration / 1e6
   io.write(string.format(
      "WRK_RESULT requests=%d duration_s=%.3f rps=%.1f p50_us=%d p90_us=%d p99_us=%d mean_us=%.1f max_us=%d " ..
      "non200=%d badbody=%d sock_connect=%d sock_read=%d sock_write=%d sock_timeout=%d\n",
      summary.requests, secs, summary.requests / secs,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean, latency.max,
      bs, bb, e.connect, e.read, e.write, e.timeout))
   if sample ~= "" then
      io.write("WRK_FIRST_BAD " .. string.gsub(sample, "\n", " ") .. "\n")
   end
end
