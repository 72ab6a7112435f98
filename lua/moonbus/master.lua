--- moonbus.master: loudness delivery. A mastering chain whose input gain is
-- solved so that the file it writes lands on a target's integrated loudness
-- with its true peak under the ceiling, verified by measuring what was
-- written, with a before/after report.
--
--   local master = require "moonbus.master"
--   local report = master.deliver{
--     input = "mix.wav", output = "master.wav", target = "spotify",
--     chain = function(g, src, s) ... return last, { limiter = lim } end,
--   }
--   io.write(master.format(report))
--
-- The chain function builds the processing after `src` with the settings
-- in `s` (s.gain: the trim being solved, dB; s.lufs, s.ceiling, s.bits,
-- s.rate) and returns its last node and a table of nodes whose results
-- the report reads (`limiter` is required: its gain reduction is what the
-- limiting budget is checked against; `compressor` is optional).
-- scripts/master.lua is the default chain, written to be copied and edited.
--
-- Policy, stated because peers get it wrong:
-- * The graph runs at the delivery rate (the input is resampled as it is
--   read), so the limiter sees the final samples: nothing after it but
--   dither, which comes last.
-- * The solver only moves the trim gain. It never switches to another
--   strategy: if the target needs more limiting than `max_limiting` dB of
--   gain reduction, deliver() fails and says how much it needed.
-- * Nothing is written under the output's name until the file it would be
--   has been measured on target; a failure leaves no file behind.

local core = require "moonbus.core"
local util = require "moonbus.util"

local M = {}

--- Delivery targets: integrated loudness (LUFS), true-peak ceiling
-- (dBTP), and format where the target fixes one. `cd` keeps the mix's
-- loudness unless a figure is given.
M.targets = {
  spotify = { lufs = -14, ceiling = -1 },
  apple = { lufs = -16, ceiling = -1 },
  youtube = { lufs = -13, ceiling = -1 },
  tidal = { lufs = -14, ceiling = -1 },
  ebu = { lufs = -23, ceiling = -1 },
  cd = { lufs = nil, ceiling = -0.3, rate = 44100, bits = 16 },
}
M.target_names = { "spotify", "apple", "youtube", "tidal", "ebu", "cd" }

--- How close the written file must be to the target (LU). The acceptance
-- figure is 0.2 LU measured by another meter; we hold ourselves to 0.05.
M.tolerance = 0.05
--- Default limiting budget: largest limiter gain reduction (dB) deliver()
-- accepts before it refuses the target.
M.max_limiting = 6
--- Codecs whose decoded output can be checked against the ceiling.
M.codecs = { mp3 = "mp3", opus = "opus", vorbis = "ogg" }

local deliver_keys = {
  input = true, output = true, target = true, lufs = true, ceiling = true,
  bits = true, rate = true, codec = true, chain = true, max_limiting = true,
  progress = true, log = true, trace = true, params = true,
}

local function fail(fmt, ...)
  error("master: " .. fmt:format(...), 0)
end

local finite = util.finite

--- Resolve a target name or a LUFS figure plus overrides into settings.
-- Returns { name, lufs, ceiling, bits, rate }.
function M.resolve(opts)
  local t = opts.target
  local base
  if t == nil then
    base = { name = "custom" }
  elseif type(t) == "number" or tonumber(t) then
    base = { name = "custom", lufs = tonumber(t), ceiling = -1 }
  else
    local tt = M.targets[t]
    if not tt then
      local hint = core.suggest(tostring(t), M.target_names)
      fail("unknown target '%s' (one of %s)%s", tostring(t),
        table.concat(M.target_names, ", "),
        hint and ("; did you mean '%s'?"):format(hint) or "")
    end
    base = { name = t, lufs = tt.lufs, ceiling = tt.ceiling, bits = tt.bits,
      rate = tt.rate }
  end
  local s = {
    name = base.name,
    lufs = opts.lufs ~= nil and opts.lufs or base.lufs,
    ceiling = opts.ceiling ~= nil and opts.ceiling or base.ceiling or -1,
    bits = opts.bits ~= nil and opts.bits or base.bits or 24,
    rate = opts.rate ~= nil and opts.rate or base.rate,
  }
  if s.lufs ~= nil and not (finite(s.lufs) and s.lufs >= -70 and s.lufs <= 0) then
    fail("--lufs %s is out of range (-70 to 0 LUFS)", tostring(s.lufs))
  end
  if s.lufs == nil and t == nil then
    fail("give a target (--target) or a loudness (--lufs)")
  end
  if not (finite(s.ceiling) and s.ceiling >= -20 and s.ceiling <= 0) then
    fail("--ceiling %s is out of range (-20 to 0 dBTP)", tostring(s.ceiling))
  end
  if s.bits ~= 16 and s.bits ~= 24 and s.bits ~= 32 then
    fail("--bits %s: use 16, 24 or 32 (float)", tostring(s.bits))
  end
  if s.rate ~= nil and not (finite(s.rate) and s.rate >= 8000 and s.rate <= 384000
      and s.rate == math.floor(s.rate)) then
    fail("--rate %s is out of range (8000 to 384000 Hz, whole)", tostring(s.rate))
  end
  return s
end

-- A name beside `path` for work files: same folder (so the final rename is
-- atomic), hidden, unique enough for concurrent runs.
function M.temp_beside(path, tag, ext)
  local dir, base = path:match("^(.*/)([^/]*)$")
  if not dir then dir, base = "", path end
  local r = ("%x%x"):format(os.time(), math.random(0, 0xffffff))
  return ("%s.%s.moonbus-%s-%s.%s"):format(dir, base, tag, r, ext or base:match("%.([^./]+)$") or "wav")
end

-- The results of a node as a table, never nil.
local function results(node)
  if not node then return {} end
  local ok, r = pcall(node.results, node)
  return ok and r or {}
end

--- One render of the chain into `path`: returns the measured figures of
-- what was written, the chain's nodes' results, and the render stats.
-- A probe writes nothing and reads only the output's loudness.
local function render_pass(o, s, gain, ceiling, path, meter_input, probe)
  local g = core.graph(s.rate, nil)
  local src = g:add("input", { path = o.input })
  -- The input's true peak (for the report) is read here, beside the
  -- chain, rather than in the measuring pass before it.
  local inm
  if meter_input then
    inm = g:add("meter", { name = "before" })
    g:connect(src, inm)
  end
  local settings = { gain = gain, lufs = s.lufs, ceiling = ceiling,
    bits = s.bits, rate = s.rate, target = s.name, params = o.params or {} }
  local last, nodes = o.chain(g, src, settings)
  if type(nodes) ~= "table" or not nodes.limiter then
    fail("the chain function must return its last node and a table with its limiter ({ limiter = node })")
  end
  local outm = g:add("meter", { name = "after", true_peak = not probe })
  g:connect(last, outm)
  if not probe then
    g:connect(last, g:add("output", { path = path, bits = s.bits }))
  end
  -- The limiter's reduction over time: its running area (dB x s) read
  -- every `trace` seconds; each step's growth over the step is the mean
  -- reduction in it.
  local areas
  if o.trace then
    areas = {}
    g:every(o.trace, function()
      areas[#areas + 1] = results(nodes.limiter).gain_reduction_area or 0
    end)
  end
  local stats = g:render { progress = o.progress }
  local r = {
    after = outm:results(),
    before = inm and inm:results(),
    stats = stats,
    gr = {},
  }
  if areas then
    local duration = (stats.outputs[1] and stats.outputs[1].frames or 0) / s.rate
    areas[#areas + 1] = results(nodes.limiter).gain_reduction_area or 0
    local values = {}
    for i = 2, #areas do
      local span = math.min(o.trace, duration - (i - 2) * o.trace)
      values[i - 1] = span > 0 and math.max(0, (areas[i] - areas[i - 1]) / span) or 0
    end
    r.gr_trace = { interval = o.trace, values = values }
  end
  for k, node in pairs(nodes) do
    r.gr[k] = results(node).max_gain_reduction or 0
  end
  g:close()
  return r
end

-- Encode `path` with a codec, decode it, and measure what a listener gets.
local function codec_check(path, codec, s)
  local ext = M.codecs[codec]
  local enc = M.temp_beside(path, "codec", ext)
  local rate = s.rate
  -- Opus only runs at 48 kHz (and its divisors): encode 44.1 kHz at 48 kHz,
  -- as the platforms do.
  if codec == "opus" and rate ~= 48000 then rate = 48000 end
  local ok, err = pcall(function()
    local g = core.graph(nil, nil)
    g:connect(g:add("input", { path = path }), g:add("output", { path = enc, rate = rate }))
    g:render { progress = false }
    g:close()
  end)
  local m
  if ok then ok, m = pcall(core.measure, enc) end
  os.remove(enc)
  if not ok then fail("%s check: %s", codec, tostring(m or err)) end
  return m
end

local function log(o, fmt, ...)
  if o.log then o.log(fmt:format(...)) end
end

--- Master `input` into `output` on a target. Options: input, output,
-- target (name or LUFS), lufs, ceiling, bits, rate, codec (list of "mp3",
-- "opus", "vorbis"), chain (function, required), max_limiting (dB),
-- progress (bool), log (function(line)), params (a table handed to the
-- chain as s.params: a batch manifest's extra columns), trace (seconds: also report the
-- limiter's mean gain reduction over each such step of the master, as
-- report.gr_trace = { interval, values }). Returns the report table.
function M.deliver(opts)
  local o = util.check_options("master", opts, deliver_keys)
  if type(o.input) ~= "string" then fail("give an input file") end
  if type(o.output) ~= "string" then fail("give an output file") end
  if type(o.chain) ~= "function" then fail("give a chain function") end
  if core.same_file(o.input, o.output) then
    fail("output '%s' is the input file; choose another name", o.output)
  end
  local s = M.resolve(o)
  local max_lim = o.max_limiting or M.max_limiting
  if not (finite(max_lim) and max_lim >= 0) then
    fail("max_limiting %s must be a number of dB >= 0", tostring(max_lim))
  end
  local codecs = {}
  for _, c in ipairs(o.codec or {}) do
    if not M.codecs[c] then
      local names = {}
      for k in pairs(M.codecs) do names[#names + 1] = k end
      table.sort(names)
      local hint = core.suggest(c, names)
      fail("unknown codec '%s' (one of %s)%s", c, table.concat(names, ", "),
        hint and ("; did you mean '%s'?"):format(hint) or "")
    end
    codecs[#codecs + 1] = c
  end
  -- Loudness first, for the first guess; the true peak comes with the
  -- first render (half the time of measuring it here).
  local before_file = core.measure(o.input, { true_peak = false })
  if not finite(before_file.integrated) then
    fail("'%s' is silent (its integrated loudness is below the -70 LUFS gate): nothing to deliver", o.input)
  end
  if s.rate and s.rate ~= before_file.rate then
    -- the graph reads the input resampled: measure the file's own peak
    before_file.true_peak = core.measure(o.input).true_peak
  end
  s.rate = s.rate or before_file.rate
  local keep_loudness = s.lufs == nil
  if keep_loudness then s.lufs = before_file.integrated end

  local writable, why = core.writable(o.output)
  if not writable then fail("%s", why) end
  local tmp = M.temp_beside(o.output, "master")
  -- Prove the folder takes files before spending any time rendering.
  local probe, perr = io.open(tmp, "w")
  if not probe then
    fail("cannot write '%s': %s", o.output, tostring(perr):gsub("^[^:]*: ", ""))
  end
  probe:close()
  os.remove(tmp)
  local ok, report = pcall(function()
    local ceiling = s.ceiling
    local passes, tried = 0, {}
    local function pass(gain, probe)
      passes = passes + 1
      local r = render_pass(o, s, gain, ceiling, tmp, before_file.true_peak == nil, probe)
      r.probe = probe
      if r.before then before_file.true_peak = r.before.true_peak end
      if not finite(r.after.integrated) then
        fail("the chain's output of '%s' is silent", o.input)
      end
      r.gain = gain
      tried[#tried + 1] = r
      log(o, "pass %d%s: trim %+.2f dB -> %.2f LUFS, limiter %.2f dB", passes,
        probe and " (probe)" or "", gain, r.after.integrated or -math.huge, r.gr.limiter or 0)
      return r
    end
    -- Solve I(gain) = target. I is the loudness of the chain's output:
    -- gain for gain while the dynamics are idle, flatter once the limiter
    -- works. The first guess treats the chain as unity (the input's own
    -- loudness at gain 0, a point that is not rendered). The dynamics
    -- take some loudness, so that guess rarely lands: its pass is a probe
    -- that writes nothing and skips the output's true peak (a third of a
    -- pass). Every later pass is written, so a pass that lands is the
    -- master. Then secant steps.
    local before = before_file
    tried[1] = { gain = 0, after = { integrated = before_file.integrated }, gr = {},
      guess = true }
    local codec_figures = {}
    local final
    for round = 1, 4 do
      local gain = tried[#tried].gain + (s.lufs - tried[#tried].after.integrated)
      local r
      for _ = 1, 12 do
        r = pass(gain, passes == 0)
        local err = s.lufs - r.after.integrated
        if math.abs(err) <= M.tolerance then break end
        -- Past the limiting budget and still short: more gain only
        -- means more limiting.
        if err > 0 and (r.gr.limiter or 0) > max_lim then break end
        -- Secant on the last two passes (a slope near 0 means the
        -- limiter is eating the gain), in steps of at most 24 dB.
        local p = tried[#tried - 1]
        local slope = (r.after.integrated - p.after.integrated) / (r.gain - p.gain)
        -- After the first pass only a guess is behind us: take a typical
        -- local slope of a glue-compressed, limited chain (0.8 LU/dB;
        -- the secant corrects it from the next pass on).
        if p.guess then slope = 0.8 end
        if not finite(slope) or slope < 0.05 then slope = 0.05 end
        gain = r.gain + math.max(-24, math.min(24, err / slope))
      end
      if (r.gr.limiter or 0) > max_lim + 1e-9 and s.lufs > r.after.integrated then
        fail("reaching %.1f LUFS needs more than %.1f dB of limiting (%.2f LUFS at %.1f dB); lower the target, raise --max-limiting, or reduce the mix's peaks",
          s.lufs, max_lim, r.after.integrated, r.gr.limiter)
      end
      if math.abs(s.lufs - r.after.integrated) > M.tolerance then
        fail("could not reach %.1f LUFS within the %.1f dBTP ceiling: the best pass measured %.2f LUFS with %.1f dB of limiting (limit %.1f dB)",
          s.lufs, s.ceiling, r.after.integrated, r.gr.limiter or 0, max_lim)
      end
      if (r.gr.limiter or 0) > max_lim + 1e-9 then
        fail("reaching %.1f LUFS needs %.1f dB of limiting, more than the %.1f dB allowed; lower the target, raise --max-limiting, or reduce the mix's peaks",
          s.lufs, r.gr.limiter, max_lim)
      end
      -- The probe landed: render it for real (the same samples).
      if r.probe then r = pass(r.gain) end
      final = r
      -- Codecs: decode what the platform would and lower the ceiling by
      -- the overshoot (plus a margin) until every codec stays under it.
      local over = 0
      codec_figures = {}
      for _, c in ipairs(codecs) do
        local m = codec_check(tmp, c, s)
        codec_figures[#codec_figures + 1] = { codec = c, true_peak = m.true_peak,
          integrated = m.integrated, ceiling_used = ceiling }
        if m.true_peak > s.ceiling then over = math.max(over, m.true_peak - s.ceiling) end
      end
      if over == 0 then break end
      if round == 4 then
        fail("the %s encodes still peak %.2f dB over the %.1f dBTP ceiling after lowering the limiter to %.2f dBTP",
          table.concat(codecs, "/"), over, s.ceiling, ceiling)
      end
      ceiling = ceiling - over - 0.1
      log(o, "codec overshoot %.2f dB: limiter ceiling now %.2f dBTP", over, ceiling)
      if ceiling < s.ceiling - 6 then
        fail("the encodes overshoot by more than 6 dB; the codec check gives up")
      end
    end
    local a = final.after
    local plr = function(m) return (m.true_peak or 0) - (m.integrated or 0) end
    return {
      input = o.input, output = o.output,
      target = { name = s.name, lufs = s.lufs, ceiling = s.ceiling,
        bits = s.bits, rate = s.rate, kept_loudness = keep_loudness },
      before = { integrated = before.integrated, lra = before.lra,
        true_peak = before.true_peak, sample_peak = before.sample_peak,
        plr = plr(before), rate = before_file.rate, duration = before_file.duration },
      after = { integrated = a.integrated, lra = a.lra, true_peak = a.true_peak,
        sample_peak = a.sample_peak, plr = plr(a), rate = s.rate, bits = s.bits },
      gain = final.gain,
      limiter_ceiling = ceiling,
      max_gain_reduction = final.gr.limiter or 0,
      compressor_gain_reduction = final.gr.compressor,
      gain_reduction = final.gr,
      codecs = codec_figures,
      gr_trace = final.gr_trace,
      passes = passes,
      max_limiting = max_lim,
    }
  end)
  if not ok then
    os.remove(tmp)
    error(report, 0)
  end
  local renamed, why = os.rename(tmp, o.output)
  if not renamed then
    os.remove(tmp)
    fail("cannot write '%s': %s", o.output, tostring(why))
  end
  return report
end

--- The chain `moonbus master` uses, for scripts that deliver with it
-- (scripts/stems.lua, the demo): the `chain` of scripts/master.lua, which
-- stays the one place it is written (the template users copy). Loading
-- that script with this sentinel makes it return its chain instead of
-- running its command line.
M.CHAIN_ONLY = setmetatable({}, { __name = "moonbus.master.CHAIN_ONLY" })
local default_chain
function M.default_chain(g, src, s)
  if not default_chain then
    local path = (MOONBUS_SCRIPTS or "scripts") .. "/master.lua"
    local f, err = loadfile(path)
    if not f then fail("cannot load the default chain: %s", err) end
    default_chain = f(M.CHAIN_ONLY)
  end
  return default_chain(g, src, s)
end

-- ---- command-line front ends (scripts/master.lua, scripts/stems.lua) ----

--- Add the delivery options to an argparse parser; `of` names what the
-- default rate comes from ("the mix's").
function M.cli_options(p, of)
  p:option("--target", "spotify, apple, youtube, tidal, ebu, cd, or a LUFS figure")
  p:option("--lufs", "integrated loudness to deliver (LUFS); overrides the target's"):convert(tonumber)
  p:option("--ceiling", "true-peak ceiling (dBTP); overrides the target's"):convert(tonumber)
  p:option("--bits", "16, 24 (dithered PCM) or 32 (float); default 24, cd 16"):convert(tonumber)
  p:option("--rate", ("sample rate of the master (Hz); default %s, cd 44100"):format(of)):convert(tonumber)
  p:option("--codec", "also check the decoded true peak of these encodes: mp3, opus, vorbis (comma-separated)")
  p:option("--max-limiting", ("largest limiter gain reduction accepted (dB, default %g)"):format(M.max_limiting))
    :convert(tonumber)
  p:option("--json", "also write the report as JSON to this file")
  p:flag("-q --quiet", "print nothing on success")
  p:flag("-v --verbose", "print each render pass on stderr")
end

--- Check parsed options `a` (usage errors name the command `cmd`) and open
-- the JSON report's file before any rendering, so a bad path fails first.
-- Returns the deliver() options they give and an object with
-- `done(report)` (writes the JSON, prints the report) and `abort()`.
function M.cli_begin(cmd, a)
  local cli = require "moonbus.cli"
  if not a.target and not a.lufs then
    cli.usage_error(("%s: give --target (%s) or --lufs"):format(cmd, table.concat(M.target_names, ", ")))
  end
  if a.target and not M.targets[a.target] and not tonumber(a.target) then
    local hint = core.suggest(a.target, M.target_names)
    cli.usage_error(("%s: unknown target '%s' (one of %s, or a LUFS figure)%s"):format(cmd, a.target,
      table.concat(M.target_names, ", "), hint and ("; did you mean '%s'?"):format(hint) or ""))
  end
  local codec
  if a.codec then
    codec = {}
    for c in a.codec:gmatch("[^,%s]+") do codec[#codec + 1] = c:lower() end
  end
  local json_tmp, json_file
  if a.json then
    json_tmp = a.json .. ".moonbus-tmp"
    local err
    json_file, err = io.open(json_tmp, "w")
    if not json_file then error(("%s: cannot write '%s': %s"):format(cmd, a.json, tostring(err)), 0) end
  end
  local opts = {
    target = a.target, lufs = a.lufs, ceiling = a.ceiling, bits = a.bits,
    rate = a.rate, codec = codec, max_limiting = a.max_limiting,
    log = a.verbose and function(line) io.stderr:write("moonbus: ", cmd, ": ", line, "\n") end or nil,
  }
  local out = {}
  function out.abort()
    if json_file then json_file:close(); os.remove(json_tmp) end
    json_file = nil
  end
  function out.done(report)
    if json_file then
      json_file:write(cli.json(M.json_table(report)), "\n")
      json_file:close()
      assert(os.rename(json_tmp, a.json))
    end
    if not a.quiet then io.write(M.format(report)) end
  end
  return opts, out
end

local function db(x)
  if not finite(x) then return x == -math.huge and "-inf" or "-" end
  return ("%.2f"):format(x)
end

--- The report as text for people.
function M.format(r)
  local t = r.target
  local lines = {}
  local function add(fmt, ...) lines[#lines + 1] = fmt:format(...) end
  add("%s -> %s", r.input, r.output)
  add("target %s: %s LUFS, ceiling %s dBTP, %d-bit%s, %d Hz", t.name, db(t.lufs),
    db(t.ceiling), t.bits, t.bits == 32 and " float" or "", t.rate)
  add("")
  add("%-22s %10s %10s", "", "before", "after")
  local rows = {
    { "integrated (LUFS)", "integrated" }, { "loudness range (LU)", "lra" },
    { "true peak (dBTP)", "true_peak" }, { "sample peak (dBFS)", "sample_peak" },
    { "PLR (dB)", "plr" },
  }
  for _, row in ipairs(rows) do
    add("%-22s %10s %10s", row[1], db(r.before[row[2]]), db(r.after[row[2]]))
  end
  add("")
  add("gain applied            %+.2f dB", r.gain)
  add("limiter, max reduction  %.2f dB (limit %.1f dB)", r.max_gain_reduction, r.max_limiting)
  if r.compressor_gain_reduction then
    add("compressor, max reduction %.2f dB", r.compressor_gain_reduction)
  end
  if math.abs(r.limiter_ceiling - t.ceiling) > 1e-9 then
    add("limiter ceiling         %.2f dBTP (lowered for the codecs)", r.limiter_ceiling)
  end
  for _, c in ipairs(r.codecs) do
    add("%-6s decoded           true peak %s dBTP, %s LUFS", c.codec, db(c.true_peak), db(c.integrated))
  end
  add("passes                  %d", r.passes)
  return table.concat(lines, "\n") .. "\n"
end

--- The report as a JSON-ready table (no infinities).
function M.json_table(r)
  local cli = require "moonbus.cli"
  local function clean(v)
    if type(v) == "number" then return cli.finite(v) end
    if type(v) ~= "table" then return v end
    local out = {}
    for k, x in pairs(v) do out[k] = clean(x) end
    return out
  end
  local out = clean(r)
  if #r.codecs == 0 then out.codecs = cli.EMPTY_LIST end
  return out
end

return M
