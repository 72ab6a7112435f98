-- mb.session (lua/moonbus/session.lua): checking, defaults, routing and
-- the graph it builds. Audio figures are in tests/acceptance/test_session.py;
-- this spec covers the Lua side. Run inside the host:
--   moonbus run tests/lua/busted.lua tests/lua/session_spec.lua
local mb = require "moonbus"

local function errors_with(f, ...)
  local ok, e = pcall(f)
  assert(not ok, "expected an error, but the call succeeded")
  e = tostring(e)
  for _, s in ipairs { ... } do
    assert(e:find(s, 1, true), ("error message %q lacks %q"):format(e, s))
  end
  return e
end

-- Tracks from generators (no files needed).
local function tone(freq)
  return function(g, track)
    return g:add("tone", { name = track.name .. ".osc", freq = freq, duration = 0.25,
      channels = 1, level = -20 })
  end
end

describe("session tables", function()
  it("fills in defaults and keeps the caller's table untouched", function()
    local t = { tracks = { { name = "a", source = tone(440), inserts = { "meter" } } } }
    local s = mb.session.check(t)
    local a = s.by_name.a
    assert.are.equal(0, a.gain)
    assert.are.equal("master", a.bus)
    assert.are.equal("-3", a.law)
    assert.is_false(a.mute)
    assert.are.equal("meter", a.inserts[1].module)
    assert.are.equal("meter", t.tracks[1].inserts[1]) -- not rewritten
    assert.are.equal(s, mb.session.check(s))           -- checked once
  end)

  it("takes the console's pan law, and a track's own", function()
    local s = mb.session.check { law = -6, tracks = {
      { name = "a", source = tone(1) }, { name = "b", source = tone(1), law = "0" } } }
    assert.are.equal("-6", s.by_name.a.law)
    assert.are.equal("0", s.by_name.b.law)
  end)

  it("orders strips so that every strip comes after what feeds it", function()
    local s = mb.session.check {
      tracks = { { name = "t", source = tone(1), bus = "sub", sends = { { to = "r" } } } },
      buses = { { name = "top" }, { name = "sub", bus = "top" } },
      returns = { { name = "r", bus = "top" } },
    }
    local at = {}
    for i, st in ipairs(s.order) do at[st.name] = i end
    assert.is_true(at.t < at.sub and at.sub < at.top and at.t < at.r and at.r < at.top)
  end)

  it("names the strip, field and value in errors", function()
    errors_with(function() mb.session.check { tracks = { { name = "k", source = tone(1), gain = 60 } } } end,
      "session: track 'k': gain 60 out of range -120..48 dB")
    errors_with(function() mb.session.check { tracks = { { name = "k", source = tone(1), solo = 1 } } } end,
      "track 'k': solo must be true or false")
    errors_with(function() mb.session.check { tracks = { { source = tone(1) } } } end,
      "track 1: give it a name")
    errors_with(function() mb.session.check { trakcs = {} } end, "'trakcs'", "did you mean 'tracks'")
    errors_with(function() mb.session.check { tracks = { { name = "master", source = tone(1) } } } end,
      "'master' is the name of the master route")
    errors_with(function()
      mb.session.check { tracks = { { name = "k", source = tone(1), sends = { { to = "r" }, { to = "r" } } } },
        returns = { { name = "r" } } }
    end, "send 2: a second send to 'r'")
    errors_with(function()
      mb.session.check { tracks = { { name = "k", source = tone(1), bus = "r" } }, returns = { { name = "r" } } }
    end, "bus 'r' is a return, not a bus")
    errors_with(function()
      mb.session.check { tracks = { { name = "k", source = tone(1),
        automation = { pan = { { 1, 0 }, { 0.5, 1 } } } } } }
    end, "automation 'pan' point 2: time 0.5 is before the previous point's")
    errors_with(function() mb.session.check { tracks = { { name = "k", source = tone(1) } }, stems = { "drums" } } end,
      "stems: entry 1: 'drums' is not a bus, return or track")
  end)
end)

describe("the console graph", function()
  local function build(t, opts)
    local g = mb.graph { rate = 48000 }
    local mix, info = mb.session.build(g, t, opts)
    return g, mix, info
  end

  it("taps pre-fader sends before the fader and post-fader sends after the pan", function()
    local g, mix, info = build {
      tracks = { { name = "v", source = tone(440), inserts = { { "eq", {} } },
        sends = { { to = "pre", pre = true }, { to = "post" } } } },
      returns = { { name = "pre" }, { name = "post" } },
    }
    local v = info.strips.v
    assert.are.equal("v.eq", v.pre.name)
    assert.are.equal("v.pan", v.post.name)
    assert.are.equal("v.send:pre", v.sends.pre.name)
    assert.are.equal("v.send:post", v.sends.post.name)
    assert.are.equal("master.sum", mix.name) -- no master inserts: the sum is the mix
    g:close()
  end)

  it("leaves out strips nobody hears and says so", function()
    local g, mix, info = build {
      tracks = { { name = "a", source = tone(1), bus = "b" }, { name = "c", source = tone(2), solo = true } },
      buses = { { name = "b", mute = true } },
    }
    assert.is_false(info.strips.a.reach)
    assert.is_nil(info.strips.a.fader)
    assert.is_not_nil(info.strips.a.input) -- still read: it keeps the mix's length
    assert.is_true(info.strips.c.reach)
    assert.is_false(info.strips.b.live)
    g:close()
  end)

  it("adds the master's inserts and fader unless bypassed", function()
    local t = { tracks = { { name = "a", source = tone(1) } },
      master = { gain = -3, inserts = { { "limiter", { ceiling = -1 } } } } }
    local g, mix, info = build(t)
    assert.are.equal("master.fader", mix.name)
    assert.are.equal("master.limiter", info.master.inserts[1].name)
    g:close()
    g, mix = build(t, { bypass_master = true })
    assert.are.equal("master.sum", mix.name)
    g:close()
  end)

  it("refuses unknown build and render options", function()
    errors_with(function() build({ tracks = { { name = "a", source = tone(1) } } }, { stem = "x" }) end,
      "unknown option 'stem'", "did you mean 'stems'")
    errors_with(function() mb.session.render({ tracks = { { name = "a", source = tone(1) } } }, { mixx = "m.wav" }) end,
      "unknown option 'mixx'", "did you mean 'mix'")
    errors_with(function() mb.session.render({ tracks = { { name = "a", source = tone(1) } } }, {}) end,
      "give a mix file")
  end)

  it("raises a source function's error with the track's name", function()
    errors_with(function()
      build { tracks = { { name = "synth", source = function() error("no oscillator", 0) end } } }
    end, "session: track 'synth': no oscillator")
    errors_with(function()
      build { tracks = { { name = "synth", source = function() return 42 end } } }
    end, "track 'synth': source must return a node")
  end)
end)

describe("pre-fader sends from buses", function()
  it("tap the bus's sum when nothing comes before its fader", function()
    local g = mb.graph { rate = 48000 }
    local _, info = mb.session.build(g, {
      tracks = { { name = "a", source = tone(440), bus = "b" } },
      buses = { { name = "b", gain = -6, sends = { { to = "r", pre = true } } } },
      returns = { { name = "r" } },
    })
    assert.are.equal("b.in", info.strips.b.pre.name)
    assert.are.equal("b.in", info.strips.b.head.name)
    g:close()
  end)
end)
