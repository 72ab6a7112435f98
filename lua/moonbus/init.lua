--- moonbus: build, automate and render audio graphs from Lua.
--
--   local mb = require "moonbus"
--   local g = mb.graph{ rate = 48000 }
--   g:chain(g:add("input", {path = "mix.wav"}),
--           g:add("eq", {bands = {{type = "highpass", freq = 30}}}),
--           g:add("output", {path = "out.wav", bits = 24}))
--   print(g:render().realtime)
--
-- The C half (moonbus.core) holds graphs and nodes; this file adds the
-- policy that is easier to read in Lua. Errors are raised with level 0: the
-- host adds the position of the script line that caused them.

local core = require "moonbus.core"

local M = {
  version = core.version,
  modules = core.modules,
  measure = core.measure,
  --- mb.analyse(path [, opts]): the QC figures and plot series of a file.
  analyse = core.analyse,
  --- mb.devices(): the audio devices PortAudio sees, each { index, name,
  -- host, inputs, outputs, default_rate, default_input, default_output }.
  devices = core.devices,
}

local Graph = core.Graph

local graph_keys = { rate = true, block = true }

local util = require "moonbus.util"

--- Nearest name in `list` to `word` (or nil), for "did you mean" hints.
M.suggest = core.suggest
--- Refuse unknown keys in an option table (see moonbus.util).
M.check_options = util.check_options

--- mb.graph{ rate = Hz, block = frames }: a new, empty graph.
-- rate defaults to the first file input's rate (48000 without one).
function M.graph(opts)
  opts = util.check_options("graph", opts, graph_keys)
  return core.graph(opts.rate, opts.block)
end

--- g:chain(a, b, c, ...): connect each node to the next; returns the last.
function Graph.chain(g, ...)
  local n = select("#", ...)
  if n == 0 then error("chain: give at least one node", 0) end
  local prev = (...)
  for i = 2, n do
    local node = select(i, ...)
    g:connect(prev, node)
    prev = node
  end
  return prev
end

M.ms = require "moonbus.ms"
M.parallel = require "moonbus.parallel"
M.master = require "moonbus.master"
M.session = require "moonbus.session"
M.audition = require("moonbus.audition").audition

return M
