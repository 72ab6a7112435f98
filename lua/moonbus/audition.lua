--- moonbus.audition: play a file through a chain with a level-matched A/B
-- switch, the way a mastering engineer compares before and after.
--
--   local r = mb.audition{ input = "mix.wav",
--     chain = function(g, src) return g:chain(src, g:add("eq", {...})) end,
--     at = { {0, "b"}, {10, "a"} },   -- scheduled switches (optional)
--     keys = true,                    -- a/b/space/q on the terminal
--     play = { device = "system", block = 256 } }
--
-- "b" is the chain's output; "a" is the original, delayed by the chain's
-- latency and turned up or down by the difference in integrated loudness
-- (both measured before playing: the original with mb.measure, the chain's
-- output by an offline pass through a meter), so the comparison is of
-- sound, not of level. The switch is the mix of a `blend` node, ramped
-- over 10 ms: no click. Returns g:play's stats with `a_gain` (dB applied
-- to the original), `loudness_a` and `loudness_b` (LUFS).
local core = require "moonbus.core"
local util = require "moonbus.util"

local M = {}

local keys = { input = true, chain = true, at = true, keys = true, play = true,
  match = true, start = true }

local function fail(fmt, ...) error(fmt:format(...), 0) end

local function build(mb, o)
  local g = mb.graph{}
  local src = g:add("input", { name = "original", path = o.input })
  local last = o.chain(g, src)
  if type(last) ~= "userdata" then fail("audition: chain must return its last node") end
  return g, src, last
end

function M.audition(o)
  local mb = require "moonbus"
  o = util.check_options("audition", o, keys)
  if type(o.input) ~= "string" then fail("audition: give input = path") end
  if o.chain == nil then
    o.chain = function(g, src)
      return (mb.master.default_chain(g, src,
        { gain = 0, lufs = -14, ceiling = -1, bits = 32 }))
    end
  elseif type(o.chain) ~= "function" then
    fail("audition: chain must be a function(g, src) returning its last node")
  end
  local start = o.start or "b"
  if start ~= "a" and start ~= "b" then fail("audition: start must be \"a\" or \"b\"") end

  -- Loudness of both sides, for the match.
  local la = mb.measure(o.input).integrated
  local g0, _, last0 = build(mb, o)
  local meter = g0:add("meter", { true_peak = false })
  g0:connect(last0, meter)
  g0:render()
  local lb = meter.integrated
  g0:close()
  local a_gain = 0
  if o.match ~= false and la > -math.huge and lb > -math.huge then a_gain = lb - la end
  if math.abs(a_gain) > 60 then
    fail("audition: the chain changes the loudness by %.1f dB; refusing to match that", a_gain)
  end

  local g, src, last = build(mb, o)
  local trim = g:add("gain", { name = "a_match", gain = a_gain })
  local ab = g:add("blend", { name = "ab", mix = start == "b" and 1 or 0 })
  g:connect(src, trim)
  g:connect(trim, ab, "dry")
  g:connect(last, ab, "wet")
  g:connect(ab, g:add("device_out", {}))

  local side = start
  local function set(s)
    side = s
    ab.mix = s == "b" and 1 or 0
  end
  if o.at then
    local pts = {}
    for i, p in ipairs(o.at) do
      if type(p) ~= "table" or type(p[1]) ~= "number" or (p[2] ~= "a" and p[2] ~= "b") then
        fail("audition: at[%d] must be {seconds, \"a\" or \"b\"}", i)
      end
      pts[#pts + 1] = { p[1], p[2] == "b" and 1 or 0, "hold" }
    end
    ab:automate("mix", pts)
  end
  local interactive = o.keys and core.key_mode(true)
  if interactive then
    io.stderr:write("moonbus: audition: a = original (level-matched ",
      ("%+.1f dB"):format(a_gain), "), b = processed, space = toggle, q = stop\n")
    g:every(0.02, function()
      local k = core.key()
      while k do
        if k == "a" or k == "b" then set(k)
        elseif k == " " then set(side == "a" and "b" or "a")
        elseif k == "q" then core.interrupt() end
        k = core.key()
      end
    end)
  end
  local ok, stats = pcall(g.play, g, o.play)
  if interactive then core.key_mode(false) end
  if not ok then error(stats, 0) end
  stats.a_gain, stats.loudness_a, stats.loudness_b = a_gain, la, lb
  return stats
end

return M
