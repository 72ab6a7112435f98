--- moonbus.session: a mixing console as a plain Lua table.
--
--   local s = mb.session.load("song.lua")        -- a file `return { ... }`
--   local stats, report = mb.session.render(s, { mix = "mix.wav", stems = "stems" })
--   io.write(mb.session.format(report))
--
-- A session has tracks (a file each, or a `source` function), buses that
-- tracks and other buses feed, returns fed by aux sends, and a master bus.
-- Every strip runs the same way:
--
--   input (sum) -> trim/polarity -> inserts -> [pre-fader sends]
--               -> fader (gain) -> width -> pan -> [post-fader sends]
--               -> its bus (or the master)
--
-- Policy, stated because consoles differ:
-- * Post-fader sends are taken after the pan (they follow the fader and the
--   pan: a track panned left feeds the left of its reverb); pre-fader sends
--   are taken before the fader and the pan (a mono track sends mono, which
--   reaches both sides of a stereo return at the send level).
-- * A muted strip outputs nothing, neither to its bus nor to its sends.
--   Muting a bus silences the bus, not the sends of the tracks that feed
--   it (as on a console: the drums' reverb keeps ringing).
-- * Solo is solo-in-place: when any track or bus is soloed, only soloed
--   tracks and the tracks routed (through buses) into a soloed bus sound;
--   buses and returns carry what reaches them, so returns are solo-safe (a
--   soloed vocal keeps its reverb). Mute wins over solo.
-- * Muting or soloing never changes the length of what is written: silent
--   tracks still count towards it (they feed the master through a blend at
--   mix 0, which passes its dry input bit-exact).
-- * Stems: every stem file has the mix's length and alignment. `stems =
--   true` writes one stem per route into the master (each bus and return
--   that feeds it, and "direct" for the tracks routed straight to it), so
--   the stems sum to the master bus's input: with the master bypassed,
--   they sum to the mix. A stem of a strip that does not reach the master
--   (muted, or silenced by a solo) is silence.
--
-- The graph compensates latency across paths, so stems, sends and buses
-- meet time-aligned whatever the inserts.

local core = require "moonbus.core"

local M = {}

--- Pan laws (level of each side at centre for a mono track, dB).
M.laws = { "0", "-3", "-4.5", "-6" }
--- The pan law when neither the track nor the session names one.
M.default_law = "-3"

local Session = {}
Session.__index = Session
Session.__name = "moonbus session"

local function fail(fmt, ...)
  error("session: " .. fmt:format(...), 0)
end

local finite = require("moonbus.util").finite

local function sorted_keys(set)
  local t = {}
  for k in pairs(set) do
    if type(k) == "string" then t[#t + 1] = k end
  end
  table.sort(t)
  return t
end

local function hint(word, names)
  local s = type(word) == "string" and core.suggest(word, names)
  return s and ("; did you mean '%s'?"):format(s) or ""
end

-- Refuse unknown keys of a strip (or other) table with a hint.
local function check_keys(where, t, allowed)
  for k in pairs(t) do
    if not allowed[k] then
      fail("%s: unknown field '%s'%s", where, tostring(k), hint(k, sorted_keys(allowed)))
    end
  end
end

local function set(...)
  local s = {}
  for _, k in ipairs { ... } do s[k] = true end
  return s
end

-- Parameter ranges from the module descriptors (the same ranges the
-- nodes will check), so a session error names the strip and field.
local ranges
local function range(module, param)
  if not ranges then
    ranges = {}
    for _, m in ipairs(core.modules()) do
      for _, p in ipairs(m.params) do
        if p.min then ranges[m.name .. "." .. p.name] = { p.min, p.max } end
      end
    end
  end
  local r = ranges[module .. "." .. param]
  return r[1], r[2]
end

local module_names
local function known_module(name)
  if not module_names then
    module_names = {}
    for _, m in ipairs(core.modules()) do module_names[#module_names + 1] = m.name end
  end
  for _, n in ipairs(module_names) do
    if n == name then return true end
  end
  return false, module_names
end

local function number_in(where, field, v, lo, hi, unit)
  if v == nil then return nil end
  if not finite(v) then
    fail("%s: %s must be a number%s, got %s", where, field, unit and (" (" .. unit .. ")") or "",
      type(v) == "number" and tostring(v) or type(v))
  end
  if v < lo or v > hi then
    fail("%s: %s %s out of range %g..%g%s", where, field, tostring(v), lo, hi,
      unit and (" " .. unit) or "")
  end
  return v
end

local function boolean(where, field, v)
  if v == nil then return false end
  if type(v) ~= "boolean" then
    fail("%s: %s must be true or false, got %s", where, field, tostring(v))
  end
  return v
end

local function law_of(where, v)
  if v == nil then return nil end
  for _, l in ipairs(M.laws) do
    if v == l or v == tonumber(l) then return l end
  end
  fail("%s: law %s is not a pan law (one of 0, -3, -4.5, -6 dB)", where, tostring(v))
end

-- "a/b.wav" relative to the session's folder; absolute paths as given.
local function resolve(dir, path)
  if not dir or dir == "" or path:sub(1, 1) == "/" then return path end
  return dir .. path
end

local curves = set("linear", "exponential", "exp", "hold")

-- Automation points as node:automate takes them, checked here so the
-- message names the strip and the lane.
local function points(where, lane, pts, lo, hi)
  if type(pts) ~= "table" then
    fail("%s: automation '%s' must be a list of {seconds, value [, curve]}", where, lane)
  end
  local out, last = {}, -math.huge
  for i, p in ipairs(pts) do
    if type(p) ~= "table" then
      fail("%s: automation '%s' point %d must be {seconds, value [, curve]}", where, lane, i)
    end
    local t, v, c = p[1], p[2], p[3]
    if not finite(t) or t < 0 then
      fail("%s: automation '%s' point %d: time %s must be seconds >= 0", where, lane, i, tostring(t))
    end
    if t < last then
      fail("%s: automation '%s' point %d: time %g is before the previous point's (%g s)",
        where, lane, i, t, last)
    end
    last = t
    if lo then
      number_in(where, ("automation '%s' point %d: value"):format(lane, i), v, lo, hi)
    end
    if c ~= nil and not curves[c] then
      fail("%s: automation '%s' point %d: curve must be \"linear\", \"exponential\" or \"hold\", got %s%s",
        where, lane, i, tostring(c), hint(c, { "linear", "exponential", "hold" }))
    end
    out[i] = { t, v, c }
  end
  if #out == 0 then fail("%s: automation '%s' has no points", where, lane) end
  return out
end

local insert_keys = set(1, 2, "name", "automation", "bypass")

-- An insert: { "module", { params }, name = ..., automation = { param =
-- points }, bypass = bool } (or just "module"). Returns nil when bypassed.
local function insert(where, i, e, dir)
  if type(e) == "string" then e = { e } end
  local w = ("%s: insert %d"):format(where, i)
  if type(e) ~= "table" then
    fail("%s must be { \"module\", { parameters } }, got %s", w, type(e))
  end
  check_keys(w, e, insert_keys)
  local kind = e[1]
  if type(kind) ~= "string" then
    fail("%s: give the module's name first ({ \"eq\", { ... } }), got %s", w, tostring(kind))
  end
  local ok, names = known_module(kind)
  if not ok then
    fail("%s: unknown module '%s'%s", w, kind, hint(kind, names))
  end
  if kind == "input" or kind == "output" or kind == "tone" or kind == "device_in"
      or kind == "device_out" then
    fail("%s: '%s' is a source or sink, not an insert", w, kind)
  end
  w = ("%s: insert %d (%s)"):format(where, i, kind)
  local params = e[2] or {}
  if type(params) ~= "table" then
    fail("%s: parameters must be a table, got %s", w, type(params))
  end
  local p = {}
  for k, v in pairs(params) do p[k] = v end
  -- files named by an insert (a convolver's impulse response) are relative
  -- to the session, like the tracks' files
  if type(p.path) == "string" then p.path = resolve(dir, p.path) end
  if e.name ~= nil and type(e.name) ~= "string" then
    fail("%s: name must be a string", w)
  end
  local auto = {}
  if e.automation ~= nil then
    if type(e.automation) ~= "table" then fail("%s: automation must be a table", w) end
    for lane, pts in pairs(e.automation) do
      if type(lane) ~= "string" then fail("%s: automation keys are parameter names", w) end
      auto[#auto + 1] = { lane, points(w, lane, pts) }
    end
    table.sort(auto, function(a, b) return a[1] < b[1] end)
  end
  if boolean(w, "bypass", e.bypass) then return nil end
  return { module = kind, params = p, name = e.name, automation = auto, where = w }
end

local function inserts(where, list, dir)
  if list == nil then return {} end
  if type(list) ~= "table" then
    fail("%s: inserts must be a list of { \"module\", { parameters } }", where)
  end
  local out = {}
  for i, e in ipairs(list) do
    out[#out + 1] = insert(where, i, e, dir)
  end
  return out
end

local strip_keys = {
  track = set("name", "file", "source", "gain", "trim", "pan", "law", "width", "mute", "solo",
    "polarity", "inserts", "bus", "sends", "automation"),
  bus = set("name", "gain", "trim", "pan", "law", "width", "mute", "solo", "polarity",
    "inserts", "bus", "sends", "automation"),
  ["return"] = set("name", "gain", "trim", "pan", "law", "width", "mute", "polarity",
    "inserts", "bus", "sends", "automation"),
}

local send_keys = set("to", "level", "pre")

-- One strip, normalised: numbers checked, defaults filled in.
local function strip(kind, i, t, dir, law)
  if type(t) ~= "table" then
    fail("%s %d must be a table, got %s", kind, i, type(t))
  end
  local name = t.name
  if type(name) ~= "string" or name == "" then
    fail("%s %d: give it a name (name = \"...\")", kind, i)
  end
  local where = ("%s '%s'"):format(kind, name)
  if kind == "return" and t.solo ~= nil then
    fail("%s: returns are solo-safe and have no solo (solo the tracks or buses that feed it)", where)
  end
  check_keys(where, t, strip_keys[kind])
  local glo, ghi = range("gain", "gain")
  local s = {
    kind = kind, name = name, where = where,
    gain = number_in(where, "gain", t.gain, glo, ghi, "dB") or 0,
    trim = number_in(where, "trim", t.trim, glo, ghi, "dB") or 0,
    pan = number_in(where, "pan", t.pan, -1, 1),
    law = law_of(where, t.law) or law,
    width = number_in(where, "width", t.width, range("width", "width")),
    mute = boolean(where, "mute", t.mute),
    solo = boolean(where, "solo", t.solo),
    polarity = boolean(where, "polarity", t.polarity),
    inserts = inserts(where, t.inserts, dir),
    bus = t.bus or "master",
    sends = {},
    automation = {},
  }
  if kind == "track" then
    if t.file ~= nil and t.source ~= nil then
      fail("%s: give a file or a source, not both", where)
    end
    if t.source ~= nil then
      if type(t.source) ~= "function" then
        fail("%s: source must be a function(g, track) returning a node", where)
      end
      s.source = t.source
    else
      if type(t.file) ~= "string" or t.file == "" then
        fail("%s: give a file (file = \"kick.wav\")", where)
      end
      s.file = resolve(dir, t.file)
      local f = io.open(s.file, "rb")
      if not f then
        fail("%s: file '%s' not found", where, s.file)
      end
      f:close()
    end
  end
  if type(s.bus) ~= "string" then
    fail("%s: bus must be the name of a bus or \"master\", got %s", where, tostring(s.bus))
  end
  if t.sends ~= nil then
    if type(t.sends) ~= "table" then
      fail("%s: sends must be a list of { to = \"return\", level = dB, pre = false }", where)
    end
    local seen = {}
    for j, e in ipairs(t.sends) do
      local w = ("%s: send %d"):format(where, j)
      if type(e) ~= "table" then fail("%s must be { to = \"return\", level = dB }", w) end
      check_keys(w, e, send_keys)
      if type(e.to) ~= "string" then fail("%s: give the return it feeds (to = \"verb\")", w) end
      if seen[e.to] then fail("%s: a second send to '%s'", w, e.to) end
      seen[e.to] = true
      s.sends[#s.sends + 1] = {
        to = e.to,
        level = number_in(w, "level", e.level, glo, ghi, "dB") or 0,
        pre = boolean(w, "pre", e.pre),
      }
    end
  end
  -- Automation lanes: the strip's own controls and its sends' levels.
  local lanes = { gain = { glo, ghi }, trim = { glo, ghi }, pan = { -1, 1 },
    width = { range("width", "width") } }
  for _, e in ipairs(s.sends) do lanes["send:" .. e.to] = { glo, ghi } end
  if t.automation ~= nil then
    if type(t.automation) ~= "table" then fail("%s: automation must be a table", where) end
    for lane, pts in pairs(t.automation) do
      local r = lanes[lane]
      if not r then
        fail("%s: cannot automate '%s' (one of %s)%s", where, tostring(lane),
          table.concat(sorted_keys(lanes), ", "), hint(lane, sorted_keys(lanes)))
      end
      s.automation[lane] = points(where, lane, pts, r[1], r[2])
    end
  end
  return s
end

local master_keys = set("gain", "inserts", "automation")
local top_keys = set("rate", "law", "tracks", "buses", "returns", "master", "stems", "output")
local output_keys = set("mix", "stems", "bits")

--- Check a session table and return its normalised form (numbers checked,
-- defaults filled in, paths resolved against `dir`, routing verified). A
-- session already checked is returned as is.
function M.check(t, dir)
  if getmetatable(t) == Session then return t end
  if type(t) ~= "table" then fail("a session is a table, got %s", type(t)) end
  check_keys("session", t, top_keys)
  if dir and dir ~= "" and dir:sub(-1) ~= "/" then dir = dir .. "/" end
  local s = setmetatable({ dir = dir, strips = {}, by_name = {} }, Session)
  if t.rate ~= nil then
    number_in("session", "rate", t.rate, 1000, 768000, "Hz")
    s.rate = t.rate
  end
  local law = law_of("session", t.law) or M.default_law
  s.law = law
  for _, group in ipairs { { "tracks", "track" }, { "buses", "bus" }, { "returns", "return" } } do
    local list = t[group[1]]
    if list ~= nil and type(list) ~= "table" then
      fail("%s must be a list of tables", group[1])
    end
    for i, e in ipairs(list or {}) do
      local st = strip(group[2], i, e, dir, law)
      if st.name == "master" or st.name == "direct" then
        fail("%s: '%s' is the name of the master route; choose another name", st.where, st.name)
      end
      local other = s.by_name[st.name]
      if other then
        fail("%s: the name is taken by %s", st.where, other.where)
      end
      s.by_name[st.name] = st
      s.strips[#s.strips + 1] = st
    end
  end
  local n_tracks = 0
  for _, st in ipairs(s.strips) do n_tracks = n_tracks + (st.kind == "track" and 1 or 0) end
  if n_tracks == 0 then fail("give at least one track (tracks = { { name = ..., file = ... } })") end

  -- Routing: outputs go to a bus or the master, sends to a return.
  local bus_names, return_names = { "master" }, {}
  for _, st in ipairs(s.strips) do
    if st.kind == "bus" then bus_names[#bus_names + 1] = st.name end
    if st.kind == "return" then return_names[#return_names + 1] = st.name end
  end
  for _, st in ipairs(s.strips) do
    if st.bus ~= "master" then
      local d = s.by_name[st.bus]
      if not d or d.kind ~= "bus" then
        fail("%s: bus '%s' %s%s", st.where, st.bus,
          d and ("is a " .. d.kind .. ", not a bus") or "does not exist", hint(st.bus, bus_names))
      end
      if d == st then fail("%s: a bus cannot feed itself", st.where) end
    end
    for _, e in ipairs(st.sends) do
      local d = s.by_name[e.to]
      if not d or d.kind ~= "return" then
        fail("%s: send to '%s': %s%s", st.where, e.to,
          d and ("a " .. d.kind .. " is not a return") or "no such return", hint(e.to, return_names))
      end
      if d == st then fail("%s: a return cannot send to itself", st.where) end
    end
  end
  -- Topological order of buses and returns (feeders first); a cycle is an
  -- error naming its strips.
  local state, order = {}, {}
  local function visit(st, path)
    if state[st] == "done" then return end
    if state[st] == "open" then
      local names, on = {}, false
      for _, p in ipairs(path) do
        if p == st then on = true end
        if on then names[#names + 1] = p.where end
      end
      names[#names + 1] = st.where
      fail("routing cycle: %s", table.concat(names, " -> "))
    end
    state[st] = "open"
    path[#path + 1] = st
    if st.bus ~= "master" then visit(s.by_name[st.bus], path) end
    for _, e in ipairs(st.sends) do visit(s.by_name[e.to], path) end
    path[#path] = nil
    state[st] = "done"
    order[#order + 1] = st
  end
  for _, st in ipairs(s.strips) do visit(st, {}) end
  -- `order` lists every strip after everything it feeds; reversed, every
  -- strip comes after its feeders.
  s.order = {}
  for i = #order, 1, -1 do s.order[#s.order + 1] = order[i] end

  if t.master ~= nil and type(t.master) ~= "table" then fail("master must be a table") end
  local m = t.master or {}
  check_keys("master", m, master_keys)
  local glo, ghi = range("gain", "gain")
  s.master = {
    where = "master",
    gain = number_in("master", "gain", m.gain, glo, ghi, "dB") or 0,
    inserts = inserts("master", m.inserts, dir),
    automation = {},
  }
  if m.automation ~= nil then
    if type(m.automation) ~= "table" then fail("master: automation must be a table") end
    for lane, pts in pairs(m.automation) do
      if lane ~= "gain" then
        fail("master: cannot automate '%s' (gain)%s", tostring(lane), hint(lane, { "gain" }))
      end
      s.master.automation.gain = points("master", "gain", pts, glo, ghi)
    end
  end

  -- Stems: true (every route into the master), or a list of strip names
  -- and "direct".
  if t.stems == true then
    s.stems = true
  elseif t.stems ~= nil and t.stems ~= false then
    if type(t.stems) ~= "table" then
      fail("stems must be true or a list of bus, return or track names (and \"direct\")")
    end
    s.stems = {}
    local names = { "direct" }
    for _, st in ipairs(s.strips) do names[#names + 1] = st.name end
    for i, n in ipairs(t.stems) do
      if n ~= "direct" and not s.by_name[n] then
        fail("stems: entry %d: '%s' is not a bus, return or track%s", i, tostring(n), hint(n, names))
      end
      s.stems[#s.stems + 1] = n
    end
  end
  if t.output ~= nil then
    if type(t.output) ~= "table" then fail("output must be { mix = path, stems = folder, bits = 24 }") end
    check_keys("output", t.output, output_keys)
    local o = t.output
    for _, k in ipairs { "mix", "stems" } do
      if o[k] ~= nil and type(o[k]) ~= "string" then fail("output: %s must be a path", k) end
    end
    s.output = { mix = o.mix and resolve(dir, o.mix), stems = o.stems and resolve(dir, o.stems),
      bits = o.bits }
  else
    s.output = {}
  end
  return s
end

-- The environment a session file runs in: data and arithmetic only (no
-- files, no processes, no globals of the caller; no getmetatable, which
-- would reach the host's string library through any string).
local function sandbox()
  local env = {}
  for _, k in ipairs { "assert", "error", "ipairs", "next", "pairs", "select", "tonumber",
    "tostring", "type", "pcall", "rawequal", "rawget", "rawlen", "rawset", "setmetatable" } do
    env[k] = _G[k]
  end
  for _, lib in ipairs { "math", "string", "table", "utf8" } do
    local c = {}
    for k, v in pairs(_G[lib]) do c[k] = v end
    env[lib] = c
  end
  return env
end

--- Load a session file (`return { ... }`), run in a sandbox that holds
-- only data and arithmetic functions, and check it. Paths in it are
-- relative to the file's folder.
function M.load(path)
  if type(path) ~= "string" then fail("load: give the session file's path") end
  local chunk, err = loadfile(path, "t", sandbox())
  if not chunk then
    local f = io.open(path, "rb")
    if not f then fail("cannot open '%s'", path) end
    f:close()
    fail("%s", err)
  end
  local ok, t = pcall(chunk)
  if not ok then fail("%s", tostring(t)) end
  if type(t) ~= "table" then
    fail("'%s' must return a table (return { tracks = { ... } }), got %s", path, type(t))
  end
  local dir = path:match("^(.*/)[^/]*$") or ""
  return M.check(t, dir)
end

-- Run `f(...)`; an error is raised again with the strip's name first.
local function within(where, f, ...)
  local ok, a, b = pcall(f, ...)
  if not ok then
    local msg = tostring(a)
    if msg:sub(1, 9) == "session: " then error(msg, 0) end
    fail("%s: %s", where, msg)
  end
  return a, b
end

-- Which strips sound: `live` (not muted, passes the solo), and `reach`
-- (live, with a live path to the master).
local function liveness(s)
  local any_solo = false
  for _, st in ipairs(s.strips) do
    if st.solo and st.kind ~= "return" then any_solo = true end
  end
  -- a track is soloed if it is, or if a bus it routes into (through
  -- buses) is
  local function soloed(st)
    while st do
      if st.solo then return true end
      st = st.bus ~= "master" and s.by_name[st.bus] or nil
    end
    return false
  end
  local live, reach, fed = {}, {}, {}
  for _, st in ipairs(s.order) do
    if st.kind == "track" then
      live[st] = not st.mute and (not any_solo or soloed(st))
    else
      live[st] = not st.mute and fed[st] == true
    end
    if live[st] then
      if st.bus ~= "master" then fed[s.by_name[st.bus]] = true end
      for _, e in ipairs(st.sends) do fed[s.by_name[e.to]] = true end
    end
  end
  for i = #s.order, 1, -1 do
    local st = s.order[i]
    if live[st] then
      local r = st.bus == "master" or reach[s.by_name[st.bus]]
      for _, e in ipairs(st.sends) do r = r or reach[s.by_name[e.to]] end
      reach[st] = r and true or false
    else
      reach[st] = false
    end
  end
  return live, reach, any_solo
end

-- A file name for a stem: the strip's name without path separators or
-- characters that trouble shells and other systems.
local function stem_file(name)
  local f = name:gsub("[^%w%-_. ]", "_"):gsub("^%.", "_")
  return f
end

local build_keys = set("stems", "bits", "bypass_master", "meters")

--- Build the session's console in graph `g`. Returns the node carrying
-- the mix (after the master bus's inserts and fader; its input sum when
-- `bypass_master`) and `info`: `strips` (by name: `input`, `head`, `pre`,
-- `fader`, `post`, `inserts`, `sends` by return name, `live`, `reach`),
-- `master` (`sum`, `fader`, `inserts`), `stems` (a list of `name`, `path`,
-- `output`, `meter`). Options: `stems` (a folder: adds one output per
-- stem), `bits` (stems' format, default 24), `bypass_master` (the master's
-- inserts, fader and automation are left out: the mix is the sum of the
-- routes), `meters` (a loudness meter per stem).
function M.build(g, session, opts)
  opts = opts or {}
  for k in pairs(opts) do
    if not build_keys[k] then
      fail("build: unknown option '%s'%s", tostring(k), hint(k, sorted_keys(build_keys)))
    end
  end
  local s = M.check(session)
  local live, reach, any_solo = liveness(s)
  local info = { strips = {}, master = {}, stems = {}, any_solo = any_solo }

  local function add(where, kind, o)
    return within(where, g.add, g, kind, o)
  end
  local function automate(where, node, param, pts)
    within(where, node.automate, node, param, pts)
  end

  -- Nodes of every strip that reaches the master (the others are left
  -- out: they would compute sound nobody hears).
  for _, st in ipairs(s.order) do
    local n = { live = live[st], reach = reach[st], inserts = {}, sends = {} }
    info.strips[st.name] = n
    if reach[st] then
      local chain = {}
      local w = st.where
      if st.kind == "track" then
        if st.file then
          n.input = add(w, "input", { path = st.file, name = st.name .. ".input" })
        else
          n.input = within(w, st.source, g, st)
          if type(n.input) ~= "userdata" then
            fail("%s: source must return a node, got %s", w, type(n.input))
          end
        end
      end
      if st.trim ~= 0 or st.polarity or st.automation.trim then
        chain[#chain + 1] = add(w, "gain", { name = st.name .. ".trim", gain = st.trim,
          invert = st.polarity })
        n.trim = chain[#chain]
        if st.automation.trim then automate(w, n.trim, "gain", st.automation.trim) end
      end
      local count = {}
      for _, e in ipairs(st.inserts) do
        count[e.module] = (count[e.module] or 0) + 1
        local o = {}
        for k, v in pairs(e.params) do o[k] = v end
        o.name = st.name .. "." .. (e.name or (e.module .. (count[e.module] > 1 and count[e.module] or "")))
        local node = add(e.where, e.module, o)
        for _, a in ipairs(e.automation) do automate(e.where, node, a[1], a[2]) end
        chain[#chain + 1] = node
        n.inserts[#n.inserts + 1] = node
      end
      -- A bus or return with nothing before its fader sums into its fader;
      -- a pre-fader send needs that sum on a node of its own.
      local any_pre = false
      for _, e in ipairs(st.sends) do any_pre = any_pre or e.pre end
      if not n.input and #chain == 0 and any_pre then
        chain[1] = add(w, "gain", { name = st.name .. ".in" })
      end
      local pre_index = #chain
      n.fader = add(w, "gain", { name = st.name .. ".fader", gain = st.gain })
      if st.automation.gain then automate(w, n.fader, "gain", st.automation.gain) end
      chain[#chain + 1] = n.fader
      if st.width or st.automation.width then
        n.width = add(w, "width", { name = st.name .. ".width", width = st.width or 1 })
        if st.automation.width then automate(w, n.width, "width", st.automation.width) end
        chain[#chain + 1] = n.width
      end
      -- Tracks always pan (a mono track becomes stereo by its law); buses
      -- and returns balance only when asked.
      if st.kind == "track" or st.pan or st.automation.pan then
        n.pan = add(w, "pan", { name = st.name .. ".pan", pan = st.pan or 0, law = st.law })
        if st.automation.pan then automate(w, n.pan, "pan", st.automation.pan) end
        chain[#chain + 1] = n.pan
      end
      -- A track's chain starts at its input; a bus's or return's at its
      -- first node, whose input sums what feeds it.
      local prev = n.input
      for _, node in ipairs(chain) do
        if prev then g:connect(prev, node) end
        prev = node
      end
      n.head = n.input or chain[1]
      n.pre = chain[pre_index] or n.input
      n.post = prev
    end
  end

  -- The master bus: a blend whose dry input sums the routes and whose wet
  -- input (at mix 0, so it is not heard) holds the tracks that do not
  -- reach it, so that they still count towards the render's length.
  local sum = add("master", "blend", { name = "master.sum", mix = 0 })
  info.master.sum = sum
  local direct
  for _, st in ipairs(s.order) do
    local n = info.strips[st.name]
    if reach[st] then
      local dest
      if st.bus == "master" then
        if st.kind == "track" then
          direct = direct or add("master", "gain", { name = "direct" })
          dest = direct
        else
          dest = sum
        end
      elseif reach[s.by_name[st.bus]] then
        dest = info.strips[st.bus].head
      end
      if dest then g:connect(n.post, dest, dest == sum and "dry" or nil) end
      for _, e in ipairs(st.sends) do
        local r = s.by_name[e.to]
        if reach[r] then
          local send = add(st.where, "gain", { name = ("%s.send:%s"):format(st.name, e.to),
            gain = e.level })
          local lane = st.automation["send:" .. e.to]
          if lane then automate(st.where, send, "gain", lane) end
          g:connect(e.pre and n.pre or n.post, send)
          g:connect(send, info.strips[e.to].head)
          n.sends[e.to] = send
        end
      end
    elseif st.kind == "track" then
      -- heard nowhere, but the mix keeps its length
      local src
      if st.file then
        src = add(st.where, "input", { path = st.file, name = st.name .. ".input" })
      else
        src = within(st.where, st.source, g, st)
      end
      n.input = src
      g:connect(src, sum, "wet")
    end
  end
  if direct then g:connect(direct, sum, "dry") end
  info.master.direct = direct

  local mix = sum
  if not opts.bypass_master then
    local prev = sum
    local m = s.master
    info.master.inserts = {}
    local count = {}
    for _, e in ipairs(m.inserts) do
      count[e.module] = (count[e.module] or 0) + 1
      local o = {}
      for k, v in pairs(e.params) do o[k] = v end
      o.name = "master." .. (e.name or (e.module .. (count[e.module] > 1 and count[e.module] or "")))
      local node = add(e.where, e.module, o)
      for _, a in ipairs(e.automation) do automate(e.where, node, a[1], a[2]) end
      g:connect(prev, node)
      prev = node
      info.master.inserts[#info.master.inserts + 1] = node
    end
    if m.gain ~= 0 or m.automation.gain then
      local f = add("master", "gain", { name = "master.fader", gain = m.gain })
      if m.automation.gain then automate("master", f, "gain", m.automation.gain) end
      g:connect(prev, f)
      prev = f
      info.master.fader = f
    end
    mix = prev
  end
  info.master.out = mix

  -- Stems: each route's signal through a blend at mix 0 whose wet input is
  -- the mix: the blend passes the stem bit-exact and gives its file the
  -- mix's length (tails included) and alignment.
  if opts.stems then
    local names = {}
    if s.stems == nil or s.stems == true then
      local any_direct = false
      for _, st in ipairs(s.strips) do
        if st.bus == "master" then
          if st.kind == "track" then any_direct = true else names[#names + 1] = st.name end
        end
      end
      if any_direct then names[#names + 1] = "direct" end
    else
      names = s.stems
    end
    local dir = opts.stems
    if dir ~= "" and dir:sub(-1) ~= "/" then dir = dir .. "/" end
    local seen = {}
    for _, name in ipairs(names) do
      local file = stem_file(name) .. ".wav"
      if seen[file] then
        fail("stems '%s' and '%s' would both be written to '%s'", seen[file], name, file)
      end
      seen[file] = name
      local tap
      if name == "direct" then tap = direct
      else tap = info.strips[name] and info.strips[name].post end
      local keep = add("stem " .. name, "blend", { name = "stem:" .. name, mix = 0 })
      if tap then g:connect(tap, keep, "dry") end
      g:connect(mix, keep, "wet")
      local last, meter = keep, nil
      if opts.meters then
        meter = add("stem " .. name, "meter", { name = "stem:" .. name .. ".meter", true_peak = false })
        g:connect(keep, meter)
        last = meter
      end
      local out = add("stem " .. name, "output", { name = "stem:" .. name .. ".out",
        path = dir .. file, bits = opts.bits or 24 })
      g:connect(last, out)
      info.stems[#info.stems + 1] = { name = name, path = dir .. file, output = out, meter = meter,
        silent = tap == nil }
    end
  end
  return mix, info
end

-- Every file a session reads (to refuse writing over one of them).
local function inputs_of(s)
  local t = {}
  for _, st in ipairs(s.strips) do
    if st.file then t[#t + 1] = st.file end
  end
  for _, st in ipairs(s.strips) do
    for _, e in ipairs(st.inserts) do
      if type(e.params.path) == "string" then t[#t + 1] = e.params.path end
    end
  end
  return t
end

local function is_dir(path)
  -- a folder opens for reading on POSIX but cannot be read from
  local f = io.open(path, "rb")
  if not f then return false end
  local ok, _, code = f:read(0)
  f:close()
  return ok == nil and code == 21 -- EISDIR
end

local function quote(p)
  return "'" .. p:gsub("'", "'\\''") .. "'"
end

local render_keys = set("mix", "stems", "bits", "bypass_master", "block", "tail", "progress",
  "meters")

-- The results of a node as a table, never nil.
local function results(node)
  local ok, r = pcall(node.results, node)
  return ok and r or {}
end

--- Render a session: the mix (`mix`, a path) and its stems (`stems`, a
-- folder, created if missing) in one pass. Options: `bits` (16, 24, 32 =
-- float; default 24), `bypass_master`, `block` (frames), `tail` (seconds,
-- the cap on reverb and delay tails), `progress`, `meters` (default true:
-- loudness of the mix and the stems in the report). Paths default to the
-- session's `output` (`false` writes none). Returns the render stats and a report (see
-- M.format). A failed render leaves neither the mix nor any stem, and
-- removes the stems folder if it created it.
function M.render(session, opts)
  opts = opts or {}
  for k in pairs(opts) do
    if not render_keys[k] then
      fail("render: unknown option '%s'%s", tostring(k), hint(k, sorted_keys(render_keys)))
    end
  end
  local s = M.check(session)
  -- false: none, even when the session names one
  local mix_path, stems_dir = opts.mix, opts.stems
  if mix_path == nil then mix_path = s.output.mix end
  if stems_dir == nil then stems_dir = s.output.stems end
  mix_path, stems_dir = mix_path or nil, stems_dir or nil
  local bits = opts.bits or s.output.bits or 24
  if bits ~= 16 and bits ~= 24 and bits ~= 32 then
    fail("bits %s: use 16, 24 or 32 (float)", tostring(bits))
  end
  if mix_path == "" then fail("render: the mix's file name is empty") end
  if stems_dir == "" then fail("render: the stems folder's name is empty") end
  if not mix_path and not stems_dir then
    fail("render: give a mix file (mix = \"mix.wav\") or a stems folder (stems = \"stems\")")
  end
  if mix_path then
    local ok, why = core.writable(mix_path)
    if not ok then fail("%s", why) end
  end
  for _, f in ipairs(inputs_of(s)) do
    if mix_path and core.same_file(f, mix_path) then
      fail("the mix '%s' is one of the session's inputs; choose another name", mix_path)
    end
  end
  -- Folders made for the stems, innermost last: a failed render removes
  -- them again (os.remove takes empty folders only).
  local created = {}
  local function unmake()
    for i = #created, 1, -1 do os.remove(created[i]) end
  end
  if stems_dir then
    if stems_dir:sub(-1) == "/" and #stems_dir > 1 then stems_dir = stems_dir:sub(1, -2) end
    local path = stems_dir:sub(1, 1) == "/" and "/" or ""
    for part in stems_dir:gmatch("[^/]+") do
      path = path .. part
      if not is_dir(path) then
        local f = io.open(path, "rb")
        if f then
          f:close()
          unmake()
          fail("cannot make the stems folder '%s': '%s' is a file", stems_dir, path)
        end
        local ok = os.execute("mkdir -- " .. quote(path) .. " 2>/dev/null")
        if not ok or not is_dir(path) then
          unmake()
          fail("cannot make the stems folder '%s'", stems_dir)
        end
        created[#created + 1] = path
      end
      path = path .. "/"
    end
  end
  local g = core.graph(s.rate, opts.block)
  local ok, res = pcall(function()
    local meters = opts.meters ~= false
    local mix, info = M.build(g, s, { stems = stems_dir, bits = bits,
      bypass_master = opts.bypass_master, meters = meters })
    for _, st in ipairs(info.stems) do
      if mix_path and st.path == mix_path then
        fail("the mix '%s' and the stem '%s' would be the same file", mix_path, st.name)
      end
      for _, f in ipairs(inputs_of(s)) do
        if core.same_file(f, st.path) then
          fail("stem '%s' would overwrite the input '%s'", st.name, f)
        end
      end
    end
    local mixm, out
    if mix_path then
      local last = mix
      if meters then
        mixm = g:add("meter", { name = "mix.meter" })
        g:connect(mix, mixm)
        last = mixm
      end
      out = g:add("output", { name = "mix.out", path = mix_path, bits = bits })
      g:connect(last, out)
    end
    local stats = g:render { tail = opts.tail, progress = opts.progress }
    return { stats = stats, info = info, mixm = mixm }
  end)
  if not ok then
    g:close()
    unmake()
    error(res, 0)
  end
  local stats, info = res.stats, res.info
  local by_path = {}
  for _, o in ipairs(stats.outputs or {}) do by_path[o.path] = o end
  local function figures(path, meter)
    local o = by_path[path] or {}
    local r = meter and results(meter) or {}
    return { path = path, integrated = r.integrated, lra = r.lra, true_peak = r.true_peak,
      sample_peak = r.sample_peak or o.peak, peak = o.peak, clipped = o.clipped,
      frames = o.frames, correlation = r.correlation }
  end
  local report = { rate = stats.rate, seconds = stats.seconds, wall = stats.wall,
    realtime = stats.realtime, latency = stats.latency, stems = {}, strips = {},
    bypass_master = opts.bypass_master and true or false, any_solo = info.any_solo }
  if mix_path then report.mix = figures(mix_path, res.mixm) end
  for _, st in ipairs(info.stems) do
    local f = figures(st.path, st.meter)
    f.name, f.silent = st.name, st.silent
    report.stems[#report.stems + 1] = f
  end
  -- Gain reduction of every insert that reports it (compressors, limiters).
  local function grs(name, kind, nodes, n)
    local e = { name = name, kind = kind, live = n.live, reach = n.reach, gain_reduction = {} }
    for _, node in ipairs(nodes or {}) do
      local gr = results(node).max_gain_reduction
      if gr then e.gain_reduction[#e.gain_reduction + 1] = { node = node.name, db = gr } end
    end
    report.strips[#report.strips + 1] = e
  end
  for _, st in ipairs(s.strips) do grs(st.name, st.kind, info.strips[st.name].inserts, info.strips[st.name]) end
  grs("master", "master", info.master.inserts, { live = true, reach = true })
  g:close()
  return stats, report
end

local function db(x)
  if x == nil then return "-" end
  if x == -math.huge then return "-inf" end
  return ("%.2f"):format(x)
end

--- The report of M.render as text for people.
function M.format(r)
  local lines = {}
  local function add(fmt, ...) lines[#lines + 1] = fmt:format(...) end
  local rows = {}
  if r.mix then rows[#rows + 1] = { "mix", r.mix } end
  for _, st in ipairs(r.stems) do rows[#rows + 1] = { "stem " .. st.name, st } end
  local w = 4
  for _, row in ipairs(rows) do w = math.max(w, #row[1]) end
  add("%-" .. w .. "s  %10s  %10s  %10s  %s", "", "LUFS", "true peak", "peak dBFS", "file")
  for _, row in ipairs(rows) do
    local f = row[2]
    add("%-" .. w .. "s  %10s  %10s  %10s  %s%s", row[1], db(f.integrated), db(f.true_peak),
      db(f.sample_peak), f.path, (f.clipped or 0) > 0 and ("  (" .. f.clipped .. " samples clipped)") or "")
  end
  local gr = {}
  for _, e in ipairs(r.strips) do
    for _, x in ipairs(e.gain_reduction) do
      gr[#gr + 1] = ("%s %.1f dB"):format(x.node, x.db)
    end
  end
  if #gr > 0 then add("gain reduction (max): %s", table.concat(gr, ", ")) end
  local quiet = {}
  for _, e in ipairs(r.strips) do
    if e.kind ~= "master" and not e.reach then quiet[#quiet + 1] = e.name end
  end
  if #quiet > 0 then
    add("not heard (muted%s): %s", r.any_solo and ", not soloed" or "", table.concat(quiet, ", "))
  end
  if r.bypass_master then add("master bus bypassed") end
  add("rendered %.1f s of audio in %.2f s (%.0fx real time)", r.seconds or 0, r.wall or 0,
    r.realtime or 0)
  return table.concat(lines, "\n") .. "\n"
end

return M
