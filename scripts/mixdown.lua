--- moonbus run scripts/mixdown.lua SESSION.lua [--mix OUT.wav] [--stems DIR]
--        [--bits 16|24|32] [--bypass-master] [--mute A,B] [--solo C]
--        [--json FILE] [--quiet]
--
-- Renders a mixing session (a Lua table file, see docs/lua-api.md "Mixing
-- sessions") to a mix and its stems in one pass, and prints the loudness
-- and peaks of each file written. --mix and --stems default to the
-- session's `output` table; --mute and --solo override the session's own
-- switches for this render (an instrumental: --mute vocals).
local mb = require "moonbus"
local cli = require "moonbus.cli"
local session = mb.session

local p = cli.parser("mixdown", "Render a mixing session to a mix and its stems.")
p:argument("session", "the session file (a Lua file returning a table)")
p:option("--mix", "the mix to write (.wav, .aif, .flac); default the session's output.mix")
p:option("--stems", "folder for the stems (created if missing); default the session's output.stems")
p:option("--bits", "16, 24 or 32 (float); default the session's, else 24"):convert(tonumber)
p:flag("--bypass-master", "leave out the master bus's inserts and fader (the mix is the sum of the stems)")
p:option("--mute", "mute these tracks, buses or returns (comma-separated)")
p:option("--solo", "solo these tracks or buses (comma-separated)")
p:option("--tail", "longest reverb or delay tail rendered after the end (s, default 60)"):convert(tonumber)
p:option("--json", "also write the report as JSON to this file")
p:flag("-q --quiet", "print nothing on success")
local a = cli.parse(p, { ... })

if a.bits and a.bits ~= 16 and a.bits ~= 24 and a.bits ~= 32 then
  cli.usage_error(("mixdown: --bits %s: use 16, 24 or 32"):format(tostring(a.bits)))
end
if a.tail and not (a.tail > 0) then
  cli.usage_error("mixdown: --tail must be a number of seconds > 0")
end

-- A runtime error without a position: printed as it is (the line of this
-- script would only distract from the session's problem).
local function run()
  local s = session.load(a.session)
  local function switch(list, field, allowed)
    if not list then return end
    local names = {}
    for _, st in ipairs(s.strips) do
      if allowed[st.kind] then names[#names + 1] = st.name end
    end
    for name in list:gmatch("[^,]+") do
      name = name:match("^%s*(.-)%s*$")
      local st = s.by_name[name]
      if not st or not allowed[st.kind] then
        local hint = mb.suggest(name, names)
        cli.usage_error(("mixdown: --%s: no %s named '%s'%s"):format(field,
          field == "solo" and "track or bus" or "track, bus or return", name,
          hint and ("; did you mean '%s'?"):format(hint) or ""))
      end
      st[field] = true
    end
  end
  switch(a.mute, "mute", { track = true, bus = true, ["return"] = true })
  switch(a.solo, "solo", { track = true, bus = true })
  if not (a.mix or s.output.mix) then
    cli.usage_error("mixdown: give --mix OUT.wav (the session has no output.mix)")
  end
  -- Open the report's file first: a bad path fails before any rendering.
  local json_tmp, json_file
  if a.json then
    json_tmp = a.json .. ".moonbus-tmp"
    local err
    json_file, err = io.open(json_tmp, "w")
    if not json_file then error("mixdown: cannot write '" .. a.json .. "': " .. tostring(err), 0) end
  end
  local ok, stats, report = pcall(session.render, s, { mix = a.mix, stems = a.stems, bits = a.bits,
    bypass_master = a.bypass_master, tail = a.tail })
  if not ok then
    if json_file then json_file:close(); os.remove(json_tmp) end
    error(stats, 0)
  end
  if json_file then
    local function clean(v)
      if type(v) == "number" then return cli.finite(v) end
      if type(v) ~= "table" then return v end
      local out = {}
      for k, x in pairs(v) do out[k] = clean(x) end
      return out
    end
    local j = clean(report)
    if #report.stems == 0 then j.stems = cli.EMPTY_LIST end
    for i, e in ipairs(report.strips) do
      if #e.gain_reduction == 0 then j.strips[i].gain_reduction = cli.EMPTY_LIST end
    end
    json_file:write(cli.json(j), "\n")
    json_file:close()
    assert(os.rename(json_tmp, a.json))
  end
  if not a.quiet then io.write(session.format(report)) end
  return stats
end

local ok, err = pcall(run)
if not ok then
  if type(err) == "string" and not err:match("^[^:]+:%d+:") then
    error({ message = err }, 0)
  end
  error(err, 0)
end
