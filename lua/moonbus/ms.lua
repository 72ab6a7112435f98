--- moonbus.ms: process mid and side through their own chains.
--
--   local out = mb.ms.process(g, src, {
--     mid  = { g:add("eq", {bands = {{type = "bell", freq = 200, gain = -2}}}) },
--     side = { g:add("eq", {bands = {{type = "highpass", freq = 120}}}),
--              g:add("gain", {gain = 2}) },
--   })
--   g:chain(out, g:add("output", {path = "wide.wav"}))
--
-- The stereo input is encoded to mid = (L+R)/2 and side = (L-R)/2; each goes
-- through its chain as a mono signal (a chain is a node, a list of nodes, or
-- a function(g, input) returning its last node); the two meet again, aligned
-- in time even when one chain has more latency than the other, and are
-- decoded back to L = M+S, R = M-S. Returns the decoder node.

local util = require "moonbus.util"

local M = {}

local keys = { mid = true, side = true, name = true }

function M.process(g, input, chains)
  chains = util.check_options("ms.process", chains, keys)
  local prefix = chains.name and (chains.name .. ".") or ""
  local enc = g:add("ms_encode", { name = prefix ~= "" and prefix .. "encode" or nil })
  g:connect(input, enc)
  local mid = g:add("channels", { first = 1, count = 1,
    name = prefix ~= "" and prefix .. "mid" or nil })
  local side = g:add("channels", { first = 2, count = 1,
    name = prefix ~= "" and prefix .. "side" or nil })
  g:connect(enc, mid)
  g:connect(enc, side)
  local mid_out = util.attach(g, mid, chains.mid, "ms.process mid")
  local side_out = util.attach(g, side, chains.side, "ms.process side")
  local merge = g:add("merge", { name = prefix ~= "" and prefix .. "merge" or nil })
  g:connect(mid_out, merge, "in")
  g:connect(side_out, merge, "in2")
  local dec = g:add("ms_decode", { name = prefix ~= "" and prefix .. "decode" or nil })
  g:connect(merge, dec)
  return dec
end

return M
