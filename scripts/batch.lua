--- moonbus batch MANIFEST [--jobs N] [--shard I/N] [--dry-run] [--out DIR]
--                        [--report DIR] [--target T] [--force] [--quiet]
-- moonbus batch MANIFEST --merge [--report DIR]
--
-- Masters every job of a manifest (CSV with a header row, or a Lua file
-- returning a list of jobs) in parallel worker processes, checks every
-- output (loudness, peaks, clipping, DC, stereo, silence, format) and
-- writes a QC report (JSON and a self-contained HTML page). Re-running
-- redoes only the jobs that changed, failed or never finished. The work is
-- in lua/moonbus/batch.lua; the chain is scripts/master.lua's unless a
-- job's `script` column names another.
local batch = require "moonbus.batch"
local cli = require "moonbus.cli"
local core = require "moonbus.core"

local p = cli.parser("batch", "Master and check every job of a manifest, in parallel and resumably.")
p:argument("manifest", "CSV (header: input,output,target[,script][,...]) or .lua job list")
p:option("-j --jobs", "worker processes (default: the cores this process may use)"):convert(tonumber)
p:option("--shard", "run only shard I of N (I/N, 1 <= I <= N); --merge joins the shards")
p:option("--out", "output folder: outputs are relative to it and must stay in it (default: the manifest's folder)")
p:option("--report", "QC report folder (default: <manifest>-qc beside the manifest)")
p:option("--target", "target for rows without one: spotify, apple, youtube, tidal, ebu, cd, or a LUFS figure")
p:flag("-n --dry-run", "check the manifest and show what would run; write nothing")
p:flag("--merge", "merge the shards' journals and reports into one")
p:flag("--force", "redo every job, finished or not")
p:flag("-q --quiet", "print only failures and the summary")
local a = cli.parse(p, { ... })

local shard
if a.shard then
  local i, n = a.shard:match("^(%d+)/(%d+)$")
  i, n = tonumber(i), tonumber(n)
  if not i or n < 1 or i < 1 or i > n then
    cli.usage_error(("batch: --shard '%s': give I/N with 1 <= I <= N (e.g. 2/4)"):format(a.shard))
  end
  shard = { index = i, count = n }
end
if a.jobs and not (a.jobs >= 1 and a.jobs == math.floor(a.jobs)) then
  cli.usage_error(("batch: --jobs %s: give a whole number >= 1"):format(tostring(a.jobs)))
end
if a.merge and (shard or a.dry_run) then
  cli.usage_error("batch: --merge works on all shards; leave out --shard and --dry-run")
end

local t0 = core.clock()
local plan = batch.plan { manifest = a.manifest, out = a.out, report = a.report,
  target = a.target, shard = shard, jobs = a.jobs and math.tointeger(a.jobs), force = a.force }

local function summary_lines(s)
  local lines = {}
  for _, r in ipairs(s.failures) do
    if r.verdict == "error" then
      lines[#lines + 1] = ("  line %s  %s: %s"):format(r.line, r.output, r.error)
    else
      local why = {}
      for _, c in ipairs(r.checks or {}) do
        if c.verdict == "fail" then
          why[#why + 1] = ("%s %s %s (%s)"):format(c.label:lower(),
            type(c.value) == "number" and ("%.2f"):format(c.value) or "-", c.unit, c.expect)
        end
      end
      lines[#lines + 1] = ("  line %s  %s: QC fail: %s"):format(r.line, r.output, table.concat(why, "; "))
    end
  end
  return lines
end

local function finish(s, what)
  io.write(("%s: %d jobs: %d pass, %d warn, %d fail, %d error%s\nreport: %s\n"):format(what,
    s.jobs, s.pass, s.warn, s.fail, s.error,
    s.skipped and s.skipped > 0 and (" (%d finished earlier)"):format(s.skipped) or "", s.html))
  local lines = summary_lines(s)
  if #lines > 0 then
    io.write("failed:\n", table.concat(lines, "\n"), "\n")
  end
  io.flush()
  if s.interrupted then
    error(("batch: interrupted; %d jobs not started (run it again to finish)"):format(s.not_started), 0)
  end
  if s.error + s.fail > 0 then
    local function n(k, what) return ("%d %s%s"):format(k, what, k == 1 and "" or "s") end
    error(("batch: %d of %d jobs failed (%s, %s)"):format(s.error + s.fail, s.jobs,
      n(s.error, "error"), n(s.fail, "QC failure")), 0)
  end
end

if a.merge then
  finish(batch.merge(plan), "merged")
  return
end

if a.dry_run then
  local header = { "line", "shard", "action", "output", "input", "target" }
  local rows = {}
  for _, job in ipairs(plan.selected) do
    local st = job.settings
    rows[#rows + 1] = { tostring(job.line), tostring(job.shard or "-"),
      job.why and ("run (" .. job.why .. ")") or "finished", job.output_rel, job.input_rel,
      st.name == "custom" and (("%.1f LUFS"):format(st.lufs)) or st.name }
  end
  if not a.quiet then cli.print_table(header, rows) end
  io.write(("dry run: %d jobs%s, %d to run, %d finished; planned in %.3f s; nothing written\n"):format(
    #plan.selected, shard and (" in shard %d/%d (of %d)"):format(shard.index, shard.count, #plan.jobs) or "",
    plan.todo, #plan.selected - plan.todo, core.clock() - t0))
  return
end

finish(batch.run(plan, { quiet = a.quiet }), shard and ("shard %d/%d"):format(shard.index, shard.count) or "batch")
