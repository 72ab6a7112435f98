--- moonbus.batch: master and check a catalogue. A manifest lists jobs (an
-- input, an output, a delivery target, optionally a chain script and its
-- parameters); jobs run in worker processes, a journal remembers which
-- finished with which inputs and settings, and every output gets a QC
-- record that the batch's report (moonbus.report) shows.
--
--   local batch = require "moonbus.batch"
--   local plan = batch.plan{ manifest = "catalogue.csv", jobs = 4 }
--   local summary = batch.run(plan)
--
-- Layout of a run (the report folder defaults to <manifest>-qc beside the
-- manifest):
--   <report>/journal.json             finished jobs (journal-shard-I-of-N.json
--                                     for shard I of N)
--   <report>/jobs/<id>.json           one job's QC record, with plot data
--   <report>/report.json, report.html the batch report (report-shard-...)
--
-- Policy, stated because it is what a label relies on:
-- * Nothing runs until the whole manifest checks out: malformed rows, two
--   rows writing one file, outputs outside the output folder are all
--   reported (with their lines) first.
-- * A job is one worker process: a crash or a bad file fails that job
--   only. Workers die with the batch (SIGKILL included), and a re-run
--   clears what a killed worker left behind.
-- * A job counts as finished only once the journal says so; the journal is
--   replaced atomically after every job, and holds a hash of the job's
--   input content and settings, so a re-run redoes exactly the jobs that
--   changed, failed or never finished.
-- * A job's shard is a hash of its output path: stable when rows are added,
--   removed or reordered.

local core = require "moonbus.core"
local master = require "moonbus.master"

local M = {}

M.JOURNAL_VERSION = 1

local function fail(fmt, ...)
  error("batch: " .. fmt:format(...), 0)
end

-- ---- JSON -----------------------------------------------------------------
-- Our own cjson instance: infinities (levels of silence) become null.
local cjson = require("cjson").new()
cjson.encode_invalid_numbers("null")
cjson.encode_sparse_array(true)
cjson.decode_invalid_numbers(false)
local EMPTY = "\0moonbus-empty-list\0"

-- Replace empty lists we marked and encode.
local function encode(v)
  return (cjson.encode(v):gsub('"\\u0000moonbus%-empty%-list\\u0000"', "[]"))
end

-- Decoded JSON with null as nil in objects and false in arrays (so arrays
-- keep their length).
local function denull(v)
  if type(v) ~= "table" then return v end
  local n = #v
  for k, x in pairs(v) do
    if x == cjson.null then
      v[k] = (math.type(k) == "integer" and k >= 1 and k <= n) and false or nil
    else
      denull(x)
    end
  end
  return v
end

local function decode(text)
  local ok, v = pcall(cjson.decode, text)
  if not ok then return nil, v end
  return denull(v)
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local text = f:read("a")
  f:close()
  return text
end

local function read_json(path)
  local text = read_file(path)
  if not text then return nil end
  return decode(text)
end

M.encode, M.decode, M.read_json = encode, decode, read_json

-- ---- paths ----------------------------------------------------------------

local function dirname(path)
  return path:match("^(.*)/[^/]*$") or "."
end

local function basename(path)
  return path:match("([^/]*)$")
end

--- Lexically normalised path: no ".", no "..", no doubled slashes. A
-- relative path climbing above its start keeps its leading "..".
local function normalise(path)
  local abs = path:sub(1, 1) == "/"
  local parts = {}
  for part in path:gmatch("[^/]+") do
    if part == ".." then
      if #parts > 0 and parts[#parts] ~= ".." then
        parts[#parts] = nil
      elseif not abs then
        parts[#parts + 1] = ".."
      end
    elseif part ~= "." then
      parts[#parts + 1] = part
    end
  end
  local s = table.concat(parts, "/")
  if abs then return "/" .. s end
  return s == "" and "." or s
end

local function join(dir, path)
  if path:sub(1, 1) == "/" then return normalise(path) end
  return normalise(dir .. "/" .. path)
end

-- Is `path` (normalised, absolute) inside folder `dir` (the same)?
local function inside(path, dir)
  if dir == "/" then return path ~= "/" end
  return path:sub(1, #dir + 1) == dir .. "/"
end

-- The real location of `path`'s deepest existing folder, for checking
-- that links do not lead an output out of its folder. Cached per folder.
local function real_parent(path, cache)
  local dir = dirname(path)
  local hit = cache[dir]
  if hit ~= nil then return hit end
  local probe, rest = dir, ""
  while true do
    local r = core.realpath(probe)
    if r then
      hit = rest == "" and r or normalise(r .. "/" .. rest)
      break
    end
    local up = dirname(probe)
    if up == probe then hit = probe; break end
    rest = basename(probe) .. (rest == "" and "" or "/" .. rest)
    probe = up
  end
  cache[dir] = hit
  return hit
end

-- ---- manifests ------------------------------------------------------------

--- Columns the batch itself reads; every other column goes to the chain as
-- s.params.
M.columns = { input = true, output = true, target = true, script = true,
  lufs = true, ceiling = true, bits = true, rate = true, codec = true,
  max_limiting = true }

local numeric = { lufs = true, ceiling = true, bits = true, rate = true,
  max_limiting = true }

-- Split CSV text (RFC 4180: quoted fields may hold commas, doubled quotes
-- and line breaks) into records { line = first line, fields }; blank lines
-- and lines starting with '#' are skipped. Returns the records, and an
-- error ("line N: ...") when the text breaks off (the records before it
-- are still returned).
local function parse_csv(text)
  text = text:gsub("^\239\187\191", "") -- a UTF-8 byte-order mark
  local records = {}
  local pos, line, n = 1, 1, #text
  while pos <= n do
    local start_line = line
    local c = text:sub(pos, pos)
    if c == "\n" or c == "\r" then
      -- blank line
      if c == "\r" and text:sub(pos + 1, pos + 1) == "\n" then pos = pos + 1 end
      pos, line = pos + 1, line + 1
    elseif c == "#" then
      local e = text:find("\n", pos, true) or n + 1
      pos, line = e + 1, line + 1
    else
      local fields = {}
      while true do
        local field
        if text:sub(pos, pos) == '"' then
          local buf, p = {}, pos + 1
          while true do
            local q = text:find('"', p, true)
            if not q then
              return records, ("line %d: a quoted field is never closed"):format(start_line)
            end
            local piece = text:sub(p, q - 1)
            local _, breaks = piece:gsub("\n", "")
            line = line + breaks
            buf[#buf + 1] = piece
            if text:sub(q + 1, q + 1) == '"' then
              buf[#buf + 1] = '"'
              p = q + 2
            else
              p = q + 1
              break
            end
          end
          field = table.concat(buf)
          pos = p
          local after = text:sub(pos, pos)
          if after ~= "," and after ~= "\n" and after ~= "\r" and after ~= "" then
            return records, ("line %d: text after a closing quote"):format(line)
          end
        else
          local e = text:find("[,\r\n]", pos) or n + 1
          field = text:sub(pos, e - 1)
          pos = e
        end
        fields[#fields + 1] = field
        local sep = text:sub(pos, pos)
        if sep == "," then
          pos = pos + 1
        else
          if sep == "\r" and text:sub(pos + 1, pos + 1) == "\n" then pos = pos + 1 end
          pos, line = pos + 1, line + 1
          break
        end
      end
      records[#records + 1] = { line = start_line, fields = fields }
    end
  end
  return records
end

local function trim(s)
  return (s:gsub("^%s+", ""):gsub("%s+$", ""))
end

-- Rows of a CSV manifest: { line, values = { column = text } }.
local function csv_rows(path, text, problems)
  local records, err = parse_csv(text)
  if err then
    problems[#problems + 1] = ("%s:%s"):format(path, (err:gsub("^line ", "")))
  end
  if #records == 0 then
    problems[#problems + 1] = ("%s: the manifest is empty (give a header row: input,output,target)"):format(path)
    return {}
  end
  local header, seen = {}, {}
  for i, name in ipairs(records[1].fields) do
    -- shown in messages: keep it printable and short
    name = trim(name):lower():gsub("[%c\128-\255]", "?"):sub(1, 40)
    if name == "" then
      problems[#problems + 1] = ("%s:%d: column %d has no name"):format(path, records[1].line, i)
    elseif seen[name] then
      problems[#problems + 1] = ("%s:%d: column '%s' appears twice"):format(path, records[1].line, name)
    end
    seen[name] = true
    header[i] = name
  end
  local complete = true
  for _, need in ipairs { "input", "output" } do
    if not seen[need] then
      problems[#problems + 1] = ("%s:%d: the header has no '%s' column (found: %s)"):format(
        path, records[1].line, need, table.concat(header, ", "):sub(1, 120))
      complete = false
    end
  end
  if not complete then return {} end
  if #records == 1 and not err then
    problems[#problems + 1] = ("%s: the manifest lists no jobs (only a header row)"):format(path)
  end
  local rows = {}
  for r = 2, #records do
    local rec = records[r]
    if #rec.fields ~= #header then
      problems[#problems + 1] = ("%s:%d: %d fields, the header has %d"):format(
        path, rec.line, #rec.fields, #header)
    else
      local values = {}
      for i, name in ipairs(header) do
        local v = trim(rec.fields[i])
        if v ~= "" then values[name] = v end
      end
      rows[#rows + 1] = { line = rec.line, values = values, where = ("%s:%d"):format(path, rec.line) }
    end
  end
  return rows
end

-- Rows of a Lua manifest: a file returning a list of job tables, or
-- { defaults = {...}, jobs = {...} }. Positions are "job N".
local function lua_rows(path, problems)
  local chunk, err = loadfile(path, "t", {})
  if not chunk then
    problems[#problems + 1] = err
    return {}
  end
  local ok, t = pcall(chunk)
  if not ok or type(t) ~= "table" then
    problems[#problems + 1] = ("%s: %s"):format(path,
      ok and "the manifest must return a table of jobs" or tostring(t))
    return {}
  end
  local defaults = t.defaults or {}
  local jobs = t.jobs or t
  local rows = {}
  for i, job in ipairs(jobs) do
    local where = ("%s: job %d"):format(path, i)
    if type(job) ~= "table" then
      problems[#problems + 1] = ("%s: a job is a table, not a %s"):format(where, type(job))
    else
      local values = {}
      for k, v in pairs(defaults) do values[k] = v end
      for k, v in pairs(job) do values[k] = v end
      local good = true
      for k, v in pairs(values) do
        if type(k) ~= "string" then
          problems[#problems + 1] = ("%s: keys are column names, not %s"):format(where, tostring(k))
          good = false
        elseif k == "codec" and type(v) == "table" then
          values[k] = table.concat(v, ",")
        elseif type(v) ~= "string" and type(v) ~= "number" and type(v) ~= "boolean" then
          problems[#problems + 1] = ("%s: '%s' is a %s (give text or a number)"):format(where, k, type(v))
          good = false
        else
          values[k] = tostring(v)
        end
      end
      if good then rows[#rows + 1] = { line = i, values = values, where = where } end
    end
  end
  if #rows == 0 and #problems == 0 then
    problems[#problems + 1] = ("%s: the manifest lists no jobs"):format(path)
  end
  return rows
end

-- ---- planning -------------------------------------------------------------

local function shard_of(id, count)
  return tonumber(id:sub(1, 8), 16) % count + 1
end

local function script_hash(path, cache)
  local h = cache[path]
  if h == nil then
    h = core.hash_file(path) or false
    cache[path] = h
  end
  return h
end

local function report_names(shard)
  if not shard then return "journal.json", "report" end
  local tag = ("shard-%d-of-%d"):format(shard.index, shard.count)
  return "journal-" .. tag .. ".json", "report-" .. tag
end

--- Plan a batch: read and check the manifest, resolve every job, and read
-- the journals. Options: manifest (path), out (output folder; default the
-- manifest's), report (report folder), target (default target), shard
-- ({ index, count }), jobs (workers), force (redo everything), problem
-- (function(line) told each problem of a bad manifest; default: a
-- "moonbus: batch:" line on stderr each). A bad manifest then raises.
function M.plan(o)
  local manifest = o.manifest
  local st = core.stat(manifest)
  if not st then fail("cannot read the manifest '%s': no such file", manifest) end
  if st.type ~= "file" then fail("the manifest '%s' is not a file", manifest) end
  local text = read_file(manifest)
  if not text then fail("cannot read the manifest '%s'", manifest) end
  local mdir = core.realpath(dirname(manifest))
  local problems = {}
  local rows = manifest:lower():match("%.lua$") and lua_rows(manifest, problems)
    or csv_rows(manifest, text, problems)

  local out_dir = o.out and join(core.realpath(".") or ".", o.out) or mdir
  local out_real = core.realpath(out_dir) or out_dir
  local stem = basename(manifest):gsub("%.[^.]*$", "")
  local report_dir = o.report and join(core.realpath(".") or ".", o.report)
    or (mdir .. "/" .. stem .. "-qc")

  local default_chain = (MOONBUS_SCRIPTS or "scripts") .. "/master.lua"
  local hashes, parents, by_output, by_input = {}, {}, {}, {}
  local jobs = {}
  for _, row in ipairs(rows) do
    local v, where = row.values, row.where
    local bad = false
    local function problem(fmt, ...)
      problems[#problems + 1] = where .. ": " .. fmt:format(...)
      bad = true
    end
    for _, need in ipairs { "input", "output" } do
      if not v[need] then problem("no %s", need) end
    end
    local job = { line = row.line, where = where, params = {} }
    -- delivery settings: the master's own checks, with the row's position
    local settings = { target = v.target or o.target }
    if not settings.target and not v.lufs then
      problem("no target (give a target column or --target)")
    end
    for k in pairs(numeric) do
      if v[k] then
        local x = tonumber(v[k])
        if not x then problem("%s '%s' is not a number", k, v[k]) end
        settings[k] = x
      end
    end
    if not bad then
      local ok, s = pcall(master.resolve, settings)
      if not ok then
        problem("%s", tostring(s):gsub("^master: ", ""))
      else
        job.settings = s
      end
    end
    job.max_limiting = settings.max_limiting
    if v.codec then
      job.codec = {}
      for c in v.codec:gmatch("[^,%s;]+") do
        c = c:lower()
        if not master.codecs[c] then problem("unknown codec '%s' (mp3, opus, vorbis)", c) end
        job.codec[#job.codec + 1] = c
      end
    end
    for k, x in pairs(v) do
      if not M.columns[k] then job.params[k] = tonumber(x) or x end
    end
    if v.script then
      job.script = join(mdir, v.script)
      if not script_hash(job.script, hashes) then
        problem("cannot read the script '%s'", v.script)
      end
    end
    if v.input then
      job.input_rel = v.input
      job.input = join(mdir, v.input)
    end
    if v.output then
      local out = join(out_dir, v.output)
      job.output_rel = v.output
      job.output = out
      if not (inside(out, out_dir) or inside(out, out_real)) then
        problem("output '%s' is outside the output folder %s", v.output, out_dir)
      else
        local rp = real_parent(out, parents)
        if not (rp == out_real or inside(rp, out_real) or rp == out_dir or inside(rp, out_dir)) then
          problem("output '%s' leads outside the output folder %s (through a link)", v.output, out_dir)
        end
        local ok, why = core.writable(out)
        if not ok then problem("%s", why) end
      end
      local rel = inside(out, out_dir) and out:sub(#out_dir + 2) or out:sub(#out_real + 2)
      job.key = rel
      job.id = core.hash(rel):sub(1, 12)
      local first = by_output[out]
      if first then
        problem("output '%s' is also written by %s", v.output, first.where)
      else
        by_output[out] = job
      end
    end
    if job.input then by_input[job.input] = by_input[job.input] or job end
    if not bad then jobs[#jobs + 1] = job end
  end
  -- an output that is another job's input
  for out, job in pairs(by_output) do
    local src = by_input[out]
    if src then
      problems[#problems + 1] = src == job
        and ("%s: output '%s' is the job's own input"):format(job.where, job.output_rel)
        or ("%s: output '%s' is the input of %s"):format(job.where, job.output_rel, src.where)
    end
  end
  if #problems > 0 then
    table.sort(problems, function(a, b)
      local fa, la = a:match("^(.-):(%d+):")
      local fb, lb = b:match("^(.-):(%d+):")
      if fa and fb and fa == fb then return tonumber(la) < tonumber(lb) end
      return a < b
    end)
    if #problems == 1 and not o.problem then fail("%s; nothing was run", problems[1]) end
    local say = o.problem or function(line) io.stderr:write("moonbus: batch: ", line, "\n") end
    for i = 1, math.min(#problems, 100) do say(problems[i]) end
    if #problems > 100 then say(("... and %d more"):format(#problems - 100)) end
    fail("%d problem%s in the manifest '%s'; nothing was run", #problems,
      #problems == 1 and "" or "s", manifest)
  end

  -- settings hash: everything that shapes a job's output, but its input
  -- content (hashed by the worker, checked against the journal's stat)
  local default_hash = script_hash(default_chain, hashes) or ""
  for _, job in ipairs(jobs) do
    local s = job.settings
    local parts = { "v1", job.key, job.input,
      ("%s|%s|%s|%s|%s"):format(s.name, tostring(s.lufs), s.ceiling, s.bits, tostring(s.rate)),
      table.concat(job.codec or {}, ","), tostring(job.max_limiting),
      job.script and (job.script .. "=" .. script_hash(job.script, hashes)) or ("default=" .. default_hash) }
    local keys = {}
    for k in pairs(job.params) do keys[#keys + 1] = k end
    table.sort(keys)
    for _, k in ipairs(keys) do parts[#parts + 1] = k .. "=" .. tostring(job.params[k]) end
    job.settings_hash = core.hash(table.concat(parts, "\0"))
  end

  local shard = o.shard
  local selected = {}
  for _, job in ipairs(jobs) do
    job.shard = shard and shard_of(job.id, shard.count) or nil
    if not shard or job.shard == shard.index then selected[#selected + 1] = job end
  end
  local journal_name, report_base = report_names(shard)
  local plan = {
    manifest = manifest, manifest_dir = mdir, out = out_dir, report = report_dir,
    jobs = jobs, selected = selected, shard = shard, workers = o.jobs or core.cpus(),
    journal_path = report_dir .. "/" .. journal_name,
    report_base = report_dir .. "/" .. report_base,
    default_chain = default_chain, force = o.force,
  }
  plan.journal = M.read_journals(report_dir)
  M.decide(plan)
  return plan
end

--- Every journal in a report folder, merged: for each job the newest
-- entry. Returns { [id] = entry }.
function M.read_journals(report_dir)
  local merged = {}
  for _, name in ipairs(core.listdir(report_dir) or {}) do
    if name:match("^journal%.json$") or name:match("^journal%-shard%-%d+%-of%-%d+%.json$") then
      local j = read_json(report_dir .. "/" .. name)
      if j and j.version == M.JOURNAL_VERSION and type(j.jobs) == "table" then
        for id, e in pairs(j.jobs) do
          local old = merged[id]
          if not old or (e.finished_at or 0) > (old.finished_at or 0) then merged[id] = e end
        end
      end
    end
  end
  return merged
end

local function same_stat(a, b)
  return a and b and a.size == b.size and a.mtime_ns == b.mtime_ns
end

--- Decide for every selected job whether it must run, and why.
function M.decide(plan)
  local todo = 0
  for _, job in ipairs(plan.selected) do
    local e = plan.journal[job.id]
    local why
    if plan.force then
      why = "forced"
    elseif not e then
      why = "new"
    elseif e.status ~= "done" then
      why = "failed before"
    elseif e.settings_hash ~= job.settings_hash then
      why = "settings changed"
    else
      local ist = core.stat(job.input)
      if not ist then
        why = "input missing"
      elseif not same_stat(ist, e.input) then
        local h = core.hash_file(job.input)
        if h ~= (e.input and e.input.content) then why = "input changed" end
      end
      if not why then
        if not same_stat(core.stat(job.output), e.output) then
          why = "output missing or changed"
        elseif not core.stat(plan.report .. "/jobs/" .. job.id .. ".json") then
          why = "QC record missing"
        end
      end
    end
    job.why = why
    if why then todo = todo + 1 end
  end
  plan.todo = todo
end

-- ---- quality control ------------------------------------------------------

--- QC thresholds. Loudness follows EBU R128 s1 (a file normalised offline
-- is expected within 0.2 LU of its target); peaks against the target's
-- ceiling (0.1 dB of meter tolerance as a warning); the rest are the
-- usual mastering-room limits. Edit here for house rules.
M.limits = {
  loudness_pass = 0.2, loudness_warn = 1.0,  -- LU from the target
  peak_tolerance = 0.1,                       -- dB over the ceiling: warn
  lra_loss_warn = 3,                          -- LU of range lost by mastering
  plr_warn = 6,                               -- dB: heavily limited below
  dc_pass = -60, dc_warn = -40,               -- dBFS
  correlation_warn = 0, correlation_fail = -0.2,
  mono_drop_warn = -3, mono_drop_fail = -6,   -- dB
  head_warn = 2, tail_warn = 5,               -- s of silence (below -60 dBFS)
}

-- figures in messages: "-14.0", "-inf", "-" (cli.db)
local function fmt_num(x, digits)
  return require("moonbus.cli").db(x, "%." .. (digits or 1) .. "f")
end

--- The checks of one output: list of { name, label, value, unit, expect,
-- verdict } and the overall verdict (worst of them).
function M.qc(after, before, s)
  local L = M.limits
  local checks = {}
  local function add(name, label, value, unit, expect, verdict)
    checks[#checks + 1] = { name = name, label = label, value = value,
      unit = unit, expect = expect, verdict = verdict }
  end
  local finite = require("moonbus.util").finite
  local lufs = s.lufs
  if lufs == nil then
    -- nothing to meet (an album's CD image in track mode: its tracks do)
    add("integrated", "Integrated loudness", after.integrated, "LUFS", s.lufs_note or "not targeted", "pass")
  else
    local d = finite(after.integrated) and math.abs(after.integrated - lufs) or math.huge
    add("integrated", "Integrated loudness", after.integrated, "LUFS",
      ("%s ±%.1f"):format(fmt_num(lufs), L.loudness_pass),
      d <= L.loudness_pass and "pass" or d <= L.loudness_warn and "warn" or "fail")
  end
  local lra_lost = finite(before.lra) and finite(after.lra) and before.lra - after.lra or 0
  add("lra", "Loudness range", after.lra, "LU",
    ("loses < %g LU (before %s)"):format(L.lra_loss_warn, fmt_num(before.lra)),
    lra_lost < L.lra_loss_warn and "pass" or "warn")
  local c = s.ceiling
  local tp = after.true_peak
  add("true_peak", "True peak", tp, "dBTP", ("<= %s"):format(fmt_num(c)),
    (not finite(tp) or tp <= c) and "pass" or tp <= c + L.peak_tolerance and "warn" or "fail")
  local sp = after.sample_peak
  add("sample_peak", "Sample peak", sp, "dBFS", ("<= %s"):format(fmt_num(c)),
    (not finite(sp) or sp <= c) and "pass" or "warn")
  add("plr", "Peak to loudness", after.plr, "dB", (">= %g"):format(L.plr_warn),
    (not finite(after.plr) or after.plr >= L.plr_warn) and "pass" or "warn")
  add("clipped", "Clipped samples", after.clipped, "samples", "0",
    (after.clipped or 0) == 0 and "pass" or (after.clip_runs or 0) > 0 and "fail" or "warn")
  local dc = after.dc_db
  add("dc", "DC offset", dc, "dBFS", ("<= %g"):format(L.dc_pass),
    (not finite(dc) or dc <= L.dc_pass) and "pass" or dc <= L.dc_warn and "warn" or "fail")
  local r = after.correlation
  add("correlation", "Stereo correlation", r, "", (">= %g"):format(L.correlation_warn),
    (not finite(r) or r >= L.correlation_warn) and "pass" or r >= L.correlation_fail and "warn" or "fail")
  local m = after.mono_drop
  add("mono_drop", "Mono fold-down", m, "dB", (">= %g"):format(L.mono_drop_warn),
    (not finite(m) or m >= L.mono_drop_warn) and "pass" or m >= L.mono_drop_fail and "warn" or "fail")
  add("head_silence", "Silence at head", after.head_silence, "s", ("<= %g"):format(L.head_warn),
    (after.head_silence or 0) <= L.head_warn and "pass" or "warn")
  add("tail_silence", "Silence at tail", after.tail_silence, "s", ("<= %g"):format(L.tail_warn),
    (after.tail_silence or 0) <= L.tail_warn and "pass" or "warn")
  add("rate", "Sample rate", after.rate, "Hz", tostring(math.tointeger(s.rate) or s.rate),
    after.rate == s.rate and "pass" or "fail")
  local bits_ok = after.bits == s.bits and (s.bits == 32) == (after.float == true)
  add("bits", "Bit depth", after.bits, "bits", s.bits == 32 and "32 float" or tostring(s.bits),
    bits_ok and "pass" or "fail")
  local rank = { pass = 1, warn = 2, fail = 3 }
  local worst = "pass"
  for _, ch in ipairs(checks) do
    if rank[ch.verdict] > rank[worst] then worst = ch.verdict end
  end
  return checks, worst
end

-- ---- one job (in a worker process) ------------------------------------------

-- Remove what an earlier, killed run left beside `path`: the master's and
-- the writer's hidden work files (".<name>.moonbus-..."), never anything
-- else. `listing` caches folder listings.
local function sweep(path, listing)
  local dir, base = dirname(path), basename(path)
  local names = listing and listing[dir]
  if not names then
    names = core.listdir(dir) or {}
    if listing then listing[dir] = names end
  end
  local plain = base:gsub("%p", "%%%0")
  for _, name in ipairs(names) do
    if name:match("^%.+" .. plain .. "%.moonbus%-") then os.remove(dir .. "/" .. name) end
  end
end

local function chain_of(job, plan)
  if not job.script then return master.default_chain end
  local f, err = loadfile(job.script)
  if not f then fail("cannot load the script: %s", err) end
  local chain = f(master.CHAIN_ONLY)
  if type(chain) ~= "function" then
    fail("the script '%s' must return its chain function when loaded with mb.master.CHAIN_ONLY (see scripts/master.lua)", job.script)
  end
  return chain
end

-- Plot series are bounded whatever the length: the waveform has 400
-- columns, loudness and gain reduction at most 600 points.
local function trace_step(duration)
  local step = 0.1
  while duration / step > 600 do step = step * 2 end
  return step
end
M.trace_step = trace_step

--- Run one job and return its QC record (raises on failure).
function M.run_job(job, plan)
  local t0 = core.clock()
  local rec = { id = job.id, line = job.line, input = job.input_rel, output = job.output_rel,
    settings_hash = job.settings_hash }
  sweep(job.output)
  local ist = core.stat(job.input)
  if not ist then fail("cannot read the input '%s': no such file", job.input_rel) end
  rec.input_stat = { size = ist.size, mtime_ns = ist.mtime_ns, content = core.hash_file(job.input) }
  local ok, err = core.mkdir(dirname(job.output))
  if not ok then fail("%s", err) end
  local before = core.analyse(job.input)
  local s = job.settings
  local report = master.deliver {
    input = job.input, output = job.output, target = s.name ~= "custom" and s.name or s.lufs,
    lufs = s.lufs, ceiling = s.ceiling, bits = s.bits, rate = s.rate,
    codec = job.codec, max_limiting = job.max_limiting, chain = chain_of(job, plan),
    params = job.params, progress = false, trace = trace_step(before.duration),
  }
  local after = core.analyse(job.output)
  -- a LUFS figure as the target reads as itself, not "custom"
  local name = s.name == "custom" and ("%g LUFS"):format(s.lufs) or s.name
  local target = { name = name, lufs = report.target.lufs, ceiling = s.ceiling,
    bits = s.bits, rate = report.target.rate }
  rec.target = target
  rec.checks, rec.verdict = M.qc(after, before, target)
  rec.before, rec.after = before, after
  rec.master = { gain = report.gain, max_gain_reduction = report.max_gain_reduction,
    compressor_gain_reduction = report.compressor_gain_reduction,
    passes = report.passes, limiter_ceiling = report.limiter_ceiling,
    codecs = #report.codecs > 0 and report.codecs or EMPTY }
  rec.gr = report.gr_trace
  local ost = core.stat(job.output)
  rec.output_stat = { size = ost.size, mtime_ns = ost.mtime_ns }
  rec.status = "done"
  rec.seconds = core.clock() - t0
  return rec
end

local function record_path(plan, id)
  return plan.report .. "/jobs/" .. id .. ".json"
end

-- The worker's whole life: run, write the record, exit. A failure is a
-- record too (status "failed" and the error).
local function worker(job, plan)
  local t0 = core.clock()
  local ok, rec = pcall(M.run_job, job, plan)
  if not ok then
    local msg = tostring(rec):gsub("^master: ", ""):gsub("^batch: ", "")
    rec = { id = job.id, line = job.line, input = job.input_rel, output = job.output_rel,
      status = "failed", verdict = "error", error = msg, seconds = core.clock() - t0,
      settings_hash = job.settings_hash, target = job.settings and {
        name = job.settings.name, lufs = job.settings.lufs, ceiling = job.settings.ceiling,
        bits = job.settings.bits, rate = job.settings.rate } }
  end
  local wrote = core.write_atomic(record_path(plan, job.id), encode(rec))
  core.exit(wrote and 0 or 3)
end

-- ---- the run --------------------------------------------------------------

local function iso_now()
  return os.date("!%Y-%m-%dT%H:%M:%SZ")
end

local function write_journal(plan)
  local jobs = {}
  for _, job in ipairs(plan.selected) do
    local e = plan.journal[job.id]
    if e then jobs[job.id] = e end
  end
  -- (an empty table encodes as {}, the empty object it is)
  local ok, err = core.write_atomic(plan.journal_path, encode {
    version = M.JOURNAL_VERSION, manifest = plan.manifest, shard = plan.shard,
    jobs = jobs,
  })
  if not ok then fail("%s", err) end
end

-- A journal entry from a worker's record.
local function entry_of(rec, job)
  return {
    status = rec.status, verdict = rec.verdict, line = job.line, output = rec.output_stat,
    input = rec.input_stat, settings_hash = job.settings_hash, error = rec.error,
    finished = iso_now(), finished_at = os.time(), seconds = rec.seconds,
  }
end

local function clock_text(s)
  s = math.max(0, math.floor(s + 0.5))
  if s >= 3600 then return ("%d:%02d:%02d"):format(s // 3600, s // 60 % 60, s % 60) end
  return ("%d:%02d"):format(s // 60, s % 60)
end

--- Run the jobs of a plan that must run. Options: quiet, out (a file for
-- the per-job lines; default stdout), progress (show the progress line;
-- default when stderr is a terminal). Returns the summary.
function M.run(plan, o)
  o = o or {}
  local out = o.out or io.stdout
  local ok, err = core.mkdir(plan.report .. "/jobs")
  if not ok then fail("%s", err) end
  local progress = o.progress
  if progress == nil then progress = core.isatty(2) end
  -- leftovers of a killed run: temporary journals and records of ours
  local listing = {}
  for _, job in ipairs(plan.selected) do
    sweep(job.output, listing)
    sweep(record_path(plan, job.id), listing)
  end
  sweep(plan.journal_path, listing)
  local queue = {}
  for _, job in ipairs(plan.selected) do
    if job.why then queue[#queue + 1] = job end
  end
  local total, done, failed, running = #queue, 0, 0, {}
  local nrunning = 0
  local t0 = core.clock()
  local function show()
    if not progress then return end
    local eta = ""
    if done > 0 then
      local left = (core.clock() - t0) / done * (total - done)
      eta = ", ETA " .. clock_text(left)
    end
    io.stderr:write(("\rbatch: %d/%d done, %d failed, %d running%s\027[K"):format(
      done, total, failed, nrunning, eta))
    io.stderr:flush()
  end
  core.trap_interrupt()
  local qi = 1
  while qi <= #queue or nrunning > 0 do
    while qi <= #queue and nrunning < plan.workers and not core.interrupted() do
      local job = queue[qi]
      qi = qi + 1
      if progress then io.stderr:write("\r\027[K"); io.stderr:flush() end
      local pid, perr = core.fork()
      if not pid then fail("%s", perr) end
      if pid == 0 then
        -- a worker never returns into the batch's loop, whatever happens
        local okw = pcall(worker, job, plan)
        core.exit(okw and 0 or 4)
      end
      running[pid] = job
      nrunning = nrunning + 1
    end
    show()
    local pid, how, code = core.wait(0.25)
    if pid and running[pid] then
      local job = running[pid]
      running[pid] = nil
      nrunning = nrunning - 1
      local rec = read_json(record_path(plan, job.id))
      if not (how == "exit" and code == 0 and rec and rec.id == job.id) then
        rec = { id = job.id, status = "failed", verdict = "error",
          error = how == "signal" and (code == 2 or code == 15) and "interrupted"
            or how == "signal" and ("the worker was killed (signal %d)"):format(code)
            or ("the worker failed (exit %d)"):format(code or -1) }
        core.write_atomic(record_path(plan, job.id), encode {
          id = job.id, line = job.line, input = job.input_rel, output = job.output_rel,
          status = "failed", verdict = "error", error = rec.error })
      end
      done = done + 1
      if rec.status ~= "done" then failed = failed + 1 end
      plan.journal[job.id] = entry_of(rec, job)
      write_journal(plan)
      if progress then io.stderr:write("\r\027[K") end
      if not o.quiet then
        if rec.status == "done" then
          local a = rec.after or {}
          out:write(("[%d/%d] %-4s %s  %s LUFS  %s dBTP  %.1f s\n"):format(done, total,
            rec.verdict, job.output_rel, fmt_num(a.integrated, 2), fmt_num(a.true_peak, 2),
            rec.seconds or 0))
        else
          out:write(("[%d/%d] FAILED %s: %s\n"):format(done, total, job.output_rel, rec.error))
        end
        out:flush()
      end
    end
  end
  if progress then io.stderr:write("\r\027[K"); io.stderr:flush() end
  if total == 0 then write_journal(plan) end
  local summary = M.write_report(plan, plan.selected, plan.report_base)
  summary.ran, summary.skipped = done, #plan.selected - done
  summary.interrupted = core.interrupted()
  summary.not_started = #queue - qi + 1
  return summary
end

-- ---- reports --------------------------------------------------------------

local heavy = { wave = true, short_term = true, spectrum = true }

-- A record without its waveform, loudness and spectrum series (for
-- report.json; the gain-reduction series is small and stays).
local function light(rec)
  local r = {}
  for k, v in pairs(rec) do r[k] = v end
  for _, side in ipairs { "before", "after" } do
    if type(rec[side]) == "table" then
      local a = {}
      for k, v in pairs(rec[side]) do
        if not heavy[k] then a[k] = v end
      end
      r[side] = a
    end
  end
  return r
end

--- Write `base`.json and `base`.html for QC records (full records, in
-- order): `meta` gives the page's title, manifest, shard, notes and any
-- more top-level fields for the JSON. Returns the summary counts and the
-- list of failed and QC-failing records. moonbus album writes its report
-- with this too.
function M.write_records(meta, records, base)
  local summary = { jobs = #records, pass = 0, warn = 0, fail = 0, error = 0 }
  local failures = {}
  for _, rec in ipairs(records) do
    summary[rec.verdict] = (summary[rec.verdict] or 0) + 1
    if rec.verdict == "error" or rec.verdict == "fail" then failures[#failures + 1] = rec end
  end
  local page = { generated = iso_now(), moonbus = core.version, summary = summary, jobs = records }
  for k, v in pairs(meta) do page[k] = v end
  local lights = {}
  for i, r in ipairs(records) do lights[i] = light(r) end
  local doc = {}
  for k, v in pairs(page) do doc[k] = v end
  doc.jobs = #lights > 0 and lights or EMPTY
  local ok, err = core.write_atomic(base .. ".json", encode(doc))
  if not ok then fail("%s", err) end
  local html = require("moonbus.report").html(page)
  ok, err = core.write_atomic(base .. ".html", html)
  if not ok then fail("%s", err) end
  summary.failures = failures
  summary.html, summary.json = base .. ".html", base .. ".json"
  return summary
end

--- Write report.json and report.html for `jobs` (in manifest order) to
-- `base`.json/.html; returns the summary counts and the lists of failed
-- and QC-failing jobs.
function M.write_report(plan, jobs, base)
  local records = {}
  for _, job in ipairs(jobs) do
    local rec = read_json(record_path(plan, job.id))
    if not rec or rec.id ~= job.id then
      rec = { id = job.id, status = "failed", verdict = "error",
        error = "not run yet" }
    end
    -- the manifest's view of the job wins over a stale record's
    rec.line, rec.input, rec.output = job.line, job.input_rel, job.output_rel
    records[#records + 1] = rec
  end
  return M.write_records({ title = "moonbus batch: " .. basename(plan.manifest),
    manifest = plan.manifest, shard = plan.shard }, records, base)
end

--- Merge the shards' journals and records into one journal and report.
-- Returns the summary; raises naming the jobs no shard has finished.
function M.merge(plan)
  local missing = {}
  for _, job in ipairs(plan.jobs) do
    local e = plan.journal[job.id]
    if not e or not core.stat(record_path(plan, job.id)) then
      missing[#missing + 1] = ("%s (%s)"):format(job.output_rel, job.where)
    end
  end
  plan.selected = plan.jobs
  plan.journal_path = plan.report .. "/journal.json"
  if #missing > 0 then
    local shown = {}
    for i = 1, math.min(#missing, 10) do shown[i] = missing[i] end
    fail("%d of %d jobs are in no shard's journal: %s%s", #missing, #plan.jobs,
      table.concat(shown, ", "), #missing > 10 and ", ..." or "")
  end
  write_journal(plan)
  return M.write_report(plan, plan.jobs, plan.report .. "/report")
end

return M
