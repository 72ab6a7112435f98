-- The Lua contract (DESIGN.md, "Lua contract"): option tables, parameters,
-- connections, object lifetimes, automation, control callbacks, helpers and
-- render statistics. Run inside the host:
--   moonbus run tests/lua/busted.lua tests/lua/api_spec.lua
local mb = require "moonbus"

-- The message of the error `f` raises (fails the test when it raises none).
local function err_of(f, ...)
  local ok, e = pcall(f, ...)
  assert(not ok, "expected an error, but the call succeeded")
  return tostring(e)
end

-- `f` raises an error whose message holds every plain string given.
local function errors_with(f, ...)
  local msg = err_of(f)
  for _, s in ipairs { ... } do
    assert(msg:find(s, 1, true), ("error message %q lacks %q"):format(msg, s))
  end
  return msg
end

local tmpfiles = {}
-- A fresh path for an output file in the temp folder (removed in teardown).
local function tmpwav(ext)
  local base = os.tmpname() -- creates an empty file: remove it, use a sibling
  os.remove(base)
  local p = base .. (ext or ".wav")
  tmpfiles[#tmpfiles + 1] = p
  return p
end

local function exists(p)
  local f = io.open(p, "rb")
  if f then f:close() end
  return f ~= nil
end

-- The moonbus executable, to run scripts that might crash in a child process.
local function moonbus_exe()
  local e = os.getenv("MOONBUS")
  if e and e ~= "" then return e end
  return (os.getenv("MOONBUS_SRC") or ".") .. "/build/moonbus"
end

-- Run `script` in a child `moonbus run`; returns exit code, stdout+stderr.
local function run_child(script)
  local path = tmpwav(".lua")
  local f = assert(io.open(path, "w"))
  f:write(script)
  f:close()
  local p = io.popen(("%q run %q 2>&1; echo \"@@rc=$?\""):format(moonbus_exe(), path))
  local out = p:read("a")
  p:close()
  local rc = tonumber(out:match("@@rc=(%d+)"))
  return rc, out
end

teardown(function()
  for _, p in ipairs(tmpfiles) do
    os.remove(p)
    -- a crashed child may leave its temporary file (".<name>.moonbus-*.tmp")
    local dir, base = p:match("^(.*)/([^/]+)$")
    if dir then os.execute("rm -f '" .. dir .. "/." .. base .. "'.moonbus-*.tmp 2>/dev/null") end
  end
end)

describe("option tables", function()
  it("mb.graph refuses unknown keys with a suggestion", function()
    errors_with(function() mb.graph { rat = 48000 } end, "rat", "did you mean 'rate'")
    errors_with(function() mb.graph { blok = 512 } end, "blok", "did you mean 'block'")
  end)

  it("g:add refuses unknown options with a suggestion", function()
    local g = mb.graph {}
    errors_with(function() g:add("gain", { gian = 1 }) end, "gian", "did you mean 'gain'")
    errors_with(function() g:add("eq", { bnds = {} }) end, "bnds", "did you mean 'bands'")
    errors_with(function() g:add("eq", { bands = { { tpye = "bell" } } }) end,
      "tpye", "did you mean 'type'")
    errors_with(function() g:add("eqq") end, "eqq", "did you mean 'eq'")
  end)

  it("g:render refuses unknown options with a suggestion", function()
    local g = mb.graph {}
    g:chain(g:add("tone", { duration = 0.1 }), g:add("output", { path = tmpwav() }))
    errors_with(function() g:render { duraton = 1 } end, "duraton", "did you mean 'duration'")
  end)

  it("library helpers refuse unknown options with a suggestion", function()
    local g = mb.graph {}
    local src = g:add("tone", { duration = 0.1 })
    errors_with(function() mb.ms.process(g, src, { mdi = {} }) end, "mdi", "did you mean 'mid'")
    errors_with(function() mb.parallel.blend(g, src, {}, { mx = 0.5 }) end, "mx",
      "did you mean 'mix'")
  end)

  it("options must be tables", function()
    errors_with(function() mb.graph(48000) end, "table")
    local g = mb.graph {}
    errors_with(function() g:add("gain", -3) end, "table")
    errors_with(function() g:render(3) end, "table")
  end)
end)

describe("parameters", function()
  local g
  before_each(function() g = mb.graph { rate = 48000 } end)
  after_each(function() g:close() end)

  it("read back what was written, with the right types", function()
    local v = g:add("gain", { gain = -6 })
    assert.equal(-6, v.gain)
    v.gain = 3.5
    assert.equal(3.5, v.gain)
    assert.equal("boolean", type(v.invert))
    assert.is_false(v.invert)
    v.invert = true
    assert.is_true(v.invert)

    local t = g:add("tone", { wave = "pink", channels = 1 })
    assert.equal("pink", t.wave) -- a choice reads as its string
    t.wave = "sine"
    assert.equal("sine", t.wave)
    assert.equal("integer", math.type(t.channels))
    assert.equal(1, t.channels)

    local eq = g:add("eq", { bands = { { type = "bell", freq = 300, gain = -2, q = 1 } } })
    assert.equal("bell", eq.type1)
    assert.equal(300, eq.freq1)
    assert.equal(-2, eq.gain1)
    assert.equal("off", eq.type2)
    eq.gain1 = 4 -- flat names: band i is <field><i>
    assert.equal(4, eq.gain1)

    local p = g:add("pan", { law = "-6" })
    assert.equal("-6", p.law)

    local path = tmpwav()
    local o = g:add("output", { path = path, bits = 16 })
    assert.equal(path, o.path)
    assert.equal(16, o.bits)
  end)

  it("name and module", function()
    local v = g:add("gain", { name = "trim" })
    assert.equal("trim", v.name)
    assert.equal("gain", v.module)
    local w = g:add("gain")
    assert.equal("string", type(w.name))
    assert.not_equal("trim", w.name)
  end)

  it("out of range: the error names node, parameter, value and range", function()
    local v = g:add("gain", { name = "trim" })
    errors_with(function() v.gain = 100 end, "trim", "gain", "100", "-120", "48")
    errors_with(function() g:add("gain", { name = "hot", gain = -500 }) end,
      "hot", "gain", "-500", "-120", "48")
    local eq = g:add("eq", { name = "tone eq" })
    errors_with(function() eq.freq1 = 5 end, "tone eq", "freq1", "5", "10")
    assert.equal(1000, eq.freq1) -- unchanged
    errors_with(function() v.gain = 0 / 0 end, "trim", "gain")
    errors_with(function() v.gain = math.huge end, "trim", "gain")
  end)

  it("wrong types are refused, naming the parameter", function()
    local v = g:add("gain", { name = "trim" })
    errors_with(function() v.gain = "loud" end, "trim", "gain", "string")
    errors_with(function() v.invert = 1 end, "trim", "invert")
    local t = g:add("tone", { name = "osc" })
    errors_with(function() t.wave = "sinus" end, "osc", "wave", "sinus", "did you mean 'sine'")
    errors_with(function() t.wave = true end, "osc", "wave")
    errors_with(function() t.channels = 2.5 end, "osc", "channels")
  end)

  it("a choice error lists the choices and suggests once", function()
    local t = g:add("tone", { name = "osc" })
    local msg = errors_with(function() t.wave = "sinus" end, '"sine"', '"pink"', '"impulse"')
    local _, n = msg:gsub("did you mean", "")
    assert.equal(1, n, msg)
  end)

  it("unknown parameters are refused with a suggestion", function()
    local v = g:add("gain", { name = "trim" })
    errors_with(function() v.gian = 1 end, "gian", "trim", "did you mean 'gain'")
    errors_with(function() return v.gian end, "gian", "did you mean 'gain'")
  end)

  it("node:params() iterates every parameter with its info table", function()
    local info_of = {}
    for _, m in ipairs(mb.modules()) do info_of[m.name] = m end
    for _, kind in ipairs { "gain", "tone", "eq", "pan", "output" } do
      local opts = kind == "output" and { path = tmpwav() } or nil
      local n = g:add(kind, opts)
      local seen = {}
      for name, value, info in n:params() do
        seen[#seen + 1] = name
        assert.is_table(info)
        assert.equal(name, info.name)
        assert.is_string(info.type)
        if info.type == "number" or info.type == "integer" then
          assert.is_number(info.min)
          assert.is_number(info.max)
          assert.is_true(info.min <= info.default and info.default <= info.max)
          assert.is_number(value)
        elseif info.type == "choice" then
          assert.is_table(info.choices)
          assert.is_string(value)
        elseif info.type == "boolean" then
          assert.is_boolean(value)
        end
        if value ~= nil then assert.same(n[name], value) end
      end
      local want = {}
      for i, p in ipairs(info_of[kind].params) do want[i] = p.name end
      assert.same(want, seen)
    end
  end)

  it("node:results() is a table", function()
    assert.is_table(g:add("gain"):results())
  end)
end)

describe("printing", function()
  it("tostring of graphs and nodes says what they are", function()
    local g = mb.graph { rate = 44100 }
    local v = g:add("gain", { name = "trim" })
    g:add("tone")
    local s = tostring(g)
    assert.truthy(s:find("graph", 1, true), s)
    assert.truthy(s:find("2 nodes", 1, true), s)
    assert.truthy(s:find("44100", 1, true), s)
    local t = tostring(v)
    assert.truthy(t:find("trim", 1, true), t)
    assert.truthy(t:find("gain", 1, true), t)
    g:close()
    assert.truthy(tostring(g):find("closed", 1, true))
    assert.is_string(tostring(v))
  end)
end)

describe("connections", function()
  local g
  before_each(function() g = mb.graph { rate = 48000 } end)

  it("g:chain connects in series and returns the last node", function()
    local a, b, c = g:add("tone", { duration = 0.1 }), g:add("gain"), g:add("gain")
    assert.equal(c, g:chain(a, b, c))
    assert.equal(b, g:chain(b))
    errors_with(function() g:chain() end, "chain")
  end)

  it("g:connect returns and validates", function()
    local t = g:add("tone", { name = "osc" })
    local b = g:add("blend", { name = "mixer" })
    g:connect(t, b, "dry")
    g:connect(t, b, "wet")
    errors_with(function() g:connect(b, t) end, "osc")           -- no inputs
    errors_with(function() g:connect(t, b, "wte") end, "mixer", "wte", "did you mean 'wet'")
    errors_with(function() g:connect(t, b, "dry") end, "osc", "mixer", "dry") -- duplicate
    local o = g:add("output", { path = tmpwav(), name = "sink" })
    errors_with(function() g:connect(o, b) end, "sink")          -- no output
    errors_with(function() g:connect(t, 42) end, "node")
    local other = mb.graph {}
    local x = other:add("gain")
    errors_with(function() g:connect(t, x) end, "graph")
  end)

  it("g:nodes() iterates the nodes in the order they were added", function()
    local a, b = g:add("gain", { name = "a" }), g:add("gain", { name = "b" })
    local names = {}
    for n in g:nodes() do names[#names + 1] = n.name end
    assert.same({ "a", "b" }, names)
  end)
end)

describe("lifetimes", function()
  it("nodes keep their graph alive", function()
    local v, path
    do
      local g = mb.graph { rate = 48000 }
      v = g:add("gain", { name = "kept", gain = -3 })
    end
    collectgarbage()
    collectgarbage()
    assert.equal(-3, v.gain)
    v.gain = -4
    assert.equal(-4, v.gain)
    assert.equal("kept", v.name)
  end)

  it("after g:close() graph and nodes raise 'graph is closed'", function()
    local g = mb.graph {}
    local v = g:add("gain")
    g:close()
    errors_with(function() return v.gain end, "graph is closed")
    errors_with(function() v.gain = 1 end, "graph is closed")
    errors_with(function() v:automate("gain", { { 0, 0 } }) end, "graph is closed")
    errors_with(function() for _ in v:params() do end end, "graph is closed")
    errors_with(function() g:add("gain") end, "graph is closed")
    errors_with(function() g:connect(v, v) end, "graph is closed")
    errors_with(function() g:render() end, "graph is closed")
    errors_with(function() g:latency() end, "graph is closed")
    g:close() -- twice is harmless
  end)

  it("to-be-closed graphs close at the end of their scope", function()
    local v
    do
      local g <close> = mb.graph {}
      v = g:add("gain")
    end
    errors_with(function() return v.gain end, "graph is closed")
  end)

  it("garbage collection in any order never crashes", function()
    local keep = {}
    for round = 1, 200 do
      local g = mb.graph { rate = 48000 }
      local prev = g:add("tone", { duration = 0.01, channels = 1 })
      local nodes = { prev }
      for i = 1, round % 7 + 1 do
        local n = g:add(i % 2 == 0 and "gain" or "eq")
        g:connect(prev, n)
        prev = n
        nodes[#nodes + 1] = n
      end
      if round % 5 == 0 then
        g:add("lua", { process = function(b) end, channels = 1 })
      end
      if round % 3 == 0 then g:close() end
      if round % 4 == 0 then keep[#keep + 1] = nodes[#nodes] end -- a node outlives g
      if round % 11 == 0 then keep[#keep + 1] = g end
      if round % 13 == 0 then
        -- render some, and let them go
        g = mb.graph { rate = 48000 }
        g:chain(g:add("tone", { duration = 0.01 }), g:add("output", { path = tmpwav() }))
        g:render()
      end
      if round % 17 == 0 then keep = {} end
      if round % 2 == 0 then collectgarbage() end
      if round % 9 == 0 then collectgarbage("step", 10) end
    end
    for _, x in ipairs(keep) do tostring(x) end
    keep = nil
    collectgarbage()
    collectgarbage()
  end)
end)

describe("latency", function()
  it("is 0 for a plain chain", function()
    local g = mb.graph { rate = 48000 }
    g:chain(g:add("tone", { duration = 0.1 }), g:add("gain"),
      g:add("output", { path = tmpwav() }))
    assert.equal(0, g:latency())
  end)

  it("adds the latency nodes report", function()
    local g = mb.graph { rate = 48000 }
    local t = g:add("tone", { duration = 0.1, channels = 1 })
    local l = g:add("lua", { process = function(b) end, latency = 100 })
    g:chain(t, l, g:add("output", { path = tmpwav() }))
    assert.equal(100, g:latency())
  end)
end)

describe("mb.modules()", function()
  it("describes every module", function()
    local mods = mb.modules()
    assert.is_table(mods)
    local names = {}
    for _, m in ipairs(mods) do
      names[m.name] = true
      assert.is_string(m.name)
      assert.is_string(m.summary)
      assert.is_string(m.doc)
      assert.is_table(m.inputs)
      assert.is_boolean(m.output)
      assert.is_table(m.params)
      for _, p in ipairs(m.params) do
        assert.is_string(p.name)
        assert.is_string(p.type)
        assert.is_string(p.help)
      end
      -- every module listed can be added (file modules need a path)
      local g = mb.graph {}
      local opts = nil
      if m.name == "lua" then opts = { process = function() end } end
      if m.name ~= "input" and m.name ~= "output" then g:add(m.name, opts) end
      g:close()
    end
    for _, want in ipairs { "input", "output", "tone", "gain", "eq", "pan", "width", "blend",
      "ms_encode", "ms_decode", "channels", "merge", "meter", "lua" } do
      assert(names[want], "module " .. want .. " is listed")
    end
  end)

  it("mb.suggest finds the nearest name", function()
    assert.equal("threshold", mb.suggest("treshold", { "ratio", "threshold", "attack" }))
    assert.is_nil(mb.suggest("zzzzzzzz", { "ratio", "threshold" }))
  end)
end)

describe("automation", function()
  local g, v
  before_each(function()
    g = mb.graph { rate = 48000 }
    v = g:add("gain", { name = "rider" })
  end)

  it("accepts the three curves", function()
    v:automate("gain", { { 0, -6, "exponential" }, { 1, -3, "hold" }, { 2, -1, "linear" }, { 3, 0 } })
  end)

  it("refuses an unknown parameter with a suggestion", function()
    errors_with(function() v:automate("gian", { { 0, 0 } }) end, "gian", "did you mean 'gain'")
  end)

  it("refuses times below 0", function()
    errors_with(function() v:automate("gain", { { -1, 0 }, { 1, -6 } }) end, "rider", "time", "-1")
  end)

  it("refuses an exponential segment through 0", function()
    errors_with(function() v:automate("gain", { { 0, -6, "exponential" }, { 1, 6 } }) end,
      "rider", "exponential")
    errors_with(function() v:automate("gain", { { 0, 0, "exponential" }, { 1, -6 } }) end,
      "rider", "exponential")
  end)

  it("refuses an unknown curve with a suggestion", function()
    errors_with(function() v:automate("gain", { { 0, 0, "exponental" }, { 1, -6 } }) end,
      "exponental", "did you mean 'exponential'")
  end)

  it("refuses out-of-range values and malformed points", function()
    errors_with(function() v:automate("gain", { { 0, 0 }, { 1, 60 } }) end, "rider", "60", "48")
    errors_with(function() v:automate("gain", { 5 }) end, "rider")
    errors_with(function() v:automate("gain", { { "soon", 0 } }) end, "rider", "time")
  end)

  it("refuses parameters that cannot be automated", function()
    local o = g:add("output", { path = tmpwav(), name = "sink" })
    errors_with(function() o:automate("path", { { 0, 1 } }) end, "sink", "path")
  end)
end)

describe("control callbacks", function()
  it("g:every runs at t = 0, s, 2s, ...", function()
    local g = mb.graph { rate = 48000 }
    g:chain(g:add("tone", { wave = "pink", duration = 0 }), g:add("output", { path = tmpwav() }))
    local ts = {}
    g:every(0.25, function(t) ts[#ts + 1] = t end)
    g:render { duration = 1 }
    assert.is_true(#ts == 4 or #ts == 5, "callbacks: " .. table.concat(ts, ", "))
    for i = 1, 4 do assert.near((i - 1) * 0.25, ts[i], 1e-9) end
  end)

  it("callbacks set parameters and a second render starts again at 0", function()
    local g = mb.graph { rate = 48000 }
    local v = g:add("gain")
    g:chain(g:add("tone", { duration = 0.5 }), v, g:add("output", { path = tmpwav() }))
    local ts = {}
    g:every(0.1, function(t) ts[#ts + 1] = t; v.gain = -t * 10 end)
    g:render()
    local first = #ts
    assert.is_true(first >= 5)
    assert.near(-4, v.gain, 1e-9)
    ts = {}
    g:render()
    assert.equal(first, #ts)
    assert.near(0, ts[1], 1e-12)
  end)

  it("an error in a callback fails the render with its message", function()
    local g = mb.graph { rate = 48000 }
    g:chain(g:add("tone", { duration = 0.5 }), g:add("output", { path = tmpwav() }))
    g:every(0.1, function(t) if t > 0.2 then error("callback broke") end end)
    errors_with(function() g:render() end, "callback broke")
  end)

  it("graph changes from a callback are refused, not fatal", function()
    local g = mb.graph { rate = 48000 }
    local v = g:add("gain")
    g:chain(g:add("tone", { duration = 0.3 }), v, g:add("output", { path = tmpwav() }))
    local msgs = {}
    g:every(0.1, function(t)
      if t == 0 then
        msgs.close = select(2, pcall(g.close, g))
        msgs.add = select(2, pcall(g.add, g, "gain"))
        msgs.every = select(2, pcall(g.every, g, 1, print))
      end
    end)
    g:render()
    assert.truthy(msgs.close and msgs.add and msgs.every)
  end)

  it("g:render from inside a callback is refused without crashing", function()
    -- in a child process: a crash must not take this spec run down with it
    local out = tmpwav()
    local rc, text = run_child(([[
local g = mb.graph { rate = 48000 }
g:chain(g:add("tone", { wave = "pink", duration = 0 }), g:add("output", { path = %q }))
g:every(0.3, function(t)
  if t == 0 then print("nested:", pcall(g.render, g, { duration = 1 })) end
end)
local s = g:render { duration = 1 }
print("frames", s.frames)
]]):format(out))
    assert.equal(0, rc, text)
    assert.truthy(text:find("nested:%s+false"), text)
    assert.truthy(text:find("frames%s+48000"), text)
  end)
end)

describe("helpers", function()
  it("mb.ms.process returns the decoder; parallel helpers return their nodes", function()
    local g = mb.graph { rate = 48000 }
    local src = g:add("tone", { duration = 0.1, channels = 2 })
    local dec = mb.ms.process(g, src, { mid = { g:add("gain") }, side = g:add("gain") })
    assert.equal("ms_decode", dec.module)
    local bl = mb.parallel.blend(g, dec, { g:add("gain", { gain = 3 }) }, { mix = 0.3 })
    assert.equal("blend", bl.module)
    assert.near(0.3, bl.mix, 1e-12)
    local sum = mb.parallel.sum(g, bl, { true, g:add("gain") })
    assert.equal("gain", sum.module)
    local path = tmpwav()
    g:chain(sum, g:add("output", { path = path }))
    local s = g:render()
    assert.equal(4800, s.frames)
    assert.is_true(exists(path))
  end)
end)

describe("render", function()
  it("writes the file and returns statistics", function()
    local path = tmpwav()
    local g = mb.graph { rate = 48000 }
    g:chain(g:add("tone", { wave = "sine", freq = 1000, level = -6, duration = 0.5, channels = 2 }),
      g:add("output", { path = path, bits = 24 }))
    local s = g:render()
    assert.equal(24000, s.frames)
    assert.equal("integer", math.type(s.frames))
    assert.near(0.5, s.seconds, 1e-9)
    assert.is_number(s.wall)
    assert.is_true(s.realtime > 0)
    assert.equal(0, s.latency)
    assert.equal(48000, s.rate)
    assert.equal(1, #s.outputs)
    assert.equal(path, s.outputs[1].path)
    assert.equal(24000, s.outputs[1].frames)
    assert.equal(0, s.outputs[1].clipped)
    assert.is_true(exists(path))
    local m = mb.measure(path)
    assert.equal(48000, m.rate)
    assert.equal(2, m.channels)
    assert.near(0.5, m.duration, 1e-9)
    assert.near(-6, m.sample_peak, 0.01)
  end)

  it("render{duration} bounds an endless source", function()
    local g = mb.graph { rate = 44100 }
    g:chain(g:add("tone", { wave = "white", duration = 0 }), g:add("output", { path = tmpwav() }))
    assert.equal(44100 / 4, g:render { duration = 0.25 }.frames)
  end)

  it("a failed render leaves no file under the output's name", function()
    local path = tmpwav()
    local g = mb.graph { rate = 48000 }
    g:chain(g:add("tone", { duration = 1 }), g:add("output", { path = path }))
    g:every(0.2, function(t) if t > 0.5 then error("stop here") end end)
    errors_with(function() g:render() end, "stop here")
    assert.is_false(exists(path))
  end)
end)
