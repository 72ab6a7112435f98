--- moonbus.parallel: dry + wet chains, blended, latency-aligned.
--
--   -- parallel ("New York") compression: 30 % of a squashed copy
--   local out = mb.parallel.blend(g, src,
--     { g:add("compressor", {threshold = -30, ratio = 8}) }, { mix = 0.3 })
--
--   -- several chains summed (each a node, a list, or a function(g, input))
--   local sum = mb.parallel.sum(g, src, { chain_a, chain_b })
--
-- The graph delays the shorter path so the branches meet time-aligned:
-- a wet chain with look-ahead does not comb-filter against the dry signal.

local util = require "moonbus.util"

local M = {}

--- Blend `input` (dry) with `input` through `wet` at `opts.mix`
-- (0 = dry only, 1 = wet only; default 0.5). Returns the blend node.
function M.blend(g, input, wet, opts)
  opts = util.check_options("parallel.blend", opts, { mix = true, name = true })
  local b = g:add("blend", { mix = opts.mix or 0.5, name = opts.name })
  g:connect(input, b, "dry")
  local last = util.attach(g, input, wet, "parallel.blend")
  g:connect(last, b, "wet")
  return b
end

--- Sum `input` through every chain in `chains` (a list of chains; `true`
-- in the list means the dry signal itself). Returns a gain node (0 dB)
-- whose input sums the branches; set its gain to trim the sum.
function M.sum(g, input, chains, opts)
  opts = util.check_options("parallel.sum", opts, { gain = true, name = true })
  local out = g:add("gain", { gain = opts.gain or 0, name = opts.name })
  for i, c in ipairs(chains) do
    local last = c == true and input or util.attach(g, input, c,
      ("parallel.sum branch %d"):format(i))
    g:connect(last, out)
  end
  return out
end

return M
