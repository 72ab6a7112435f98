--- moonbus.util: shared helpers of the Lua half.
--
-- attach: a chain given in any of the usual shapes.
-- A chain is a node, a list of nodes (connected in order), or a function
-- `f(g, input)` that builds nodes after `input` and returns the last one.
-- `attach` connects `input` to the chain and returns the chain's last node;
-- an empty chain returns `input` itself.

local core = require "moonbus.core"

local M = {}

--- A number that is neither NaN nor infinite (levels of silence are -inf).
function M.finite(x)
  return type(x) == "number" and x == x and x > -math.huge and x < math.huge
end

--- Refuse keys of `opts` that are not in `allowed` (a set), naming `what`,
-- with the nearest valid key as a hint. Returns opts (or {} for nil).
function M.check_options(what, opts, allowed)
  if opts == nil then return {} end
  if type(opts) ~= "table" then
    error(("%s: options must be a table, got %s"):format(what, type(opts)), 0)
  end
  local names = {}
  for k in pairs(allowed) do names[#names + 1] = k end
  table.sort(names)
  for k in pairs(opts) do
    if not allowed[k] then
      local s = type(k) == "string" and core.suggest(k, names)
      error(("unknown option '%s' for %s%s"):format(tostring(k), what,
        s and ("; did you mean '%s'?"):format(s) or ""), 0)
    end
  end
  return opts
end

function M.attach(g, input, chain, what)
  local t = type(chain)
  if chain == nil then return input end
  if t == "function" then
    local last = chain(g, input)
    if last == nil then
      error(("%s: the chain function must return its last node"):format(what), 0)
    end
    return last
  end
  if t == "userdata" then
    g:connect(input, chain)
    return chain
  end
  if t == "table" then
    local prev = input
    for i, node in ipairs(chain) do
      if type(node) ~= "userdata" then
        error(("%s: chain entry %d is a %s, not a node"):format(what, i, type(node)), 0)
      end
      g:connect(prev, node)
      prev = node
    end
    return prev
  end
  error(("%s: a chain is a node, a list of nodes or a function, not a %s")
    :format(what, t), 0)
end

return M
