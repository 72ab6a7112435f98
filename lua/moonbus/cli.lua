--- moonbus.cli: shared pieces of the command scripts in scripts/.
--
-- Usage errors are raised as { usage = true, message = ... }: the host
-- prints "moonbus: <message>" and exits with status 2. Other errors are
-- plain messages (exit status 1).

local argparse = require "argparse"

local M = {}

function M.usage_error(msg)
  error({ usage = true, message = msg }, 0)
end

--- An argparse parser for `moonbus <cmd>`, parsed without exiting: returns
-- the parsed arguments or raises a usage error naming the problem.
function M.parse(parser, args)
  -- "--lufs -14": argparse would read "-14" as an option; a negative
  -- number after an option that takes no "=" is that option's value.
  local joined, i = {}, 1
  while i <= #args do
    local a, nxt = args[i], args[i + 1]
    if a:match("^%-%-[%w-]+$") and nxt and nxt:match("^%-%.?%d") then
      joined[#joined + 1] = a .. "=" .. nxt
      i = i + 2
    else
      joined[#joined + 1] = a
      i = i + 1
    end
  end
  local ok, res = parser:pparse(joined)
  if not ok then
    local name = parser._name or "moonbus"
    M.usage_error(("%s: %s (see %s --help)"):format(name, res, name))
  end
  return res
end

function M.parser(cmd, description)
  return argparse("moonbus " .. cmd, description)
end

--- Format a level for people: "-14.02", "-inf".
function M.db(x, fmt)
  if x == nil then return "-" end
  if x == -math.huge then return "-inf" end
  if x ~= x then return "nan" end
  return (fmt or "%.2f"):format(x)
end

--- JSON-safe number: nil for -inf/inf/nan (cjson cannot encode them).
function M.finite(x)
  if type(x) ~= "number" or x ~= x or x == math.huge or x == -math.huge then
    return nil
  end
  return x
end

--- A value that encodes as an empty JSON list: Debian's lua-cjson 2.1.0
-- encodes every empty table as {} and has no empty_array.
M.EMPTY_LIST = "\0moonbus-empty-list\0"

--- JSON text of `v`, with M.EMPTY_LIST as [].
function M.json(v)
  local cjson = require "cjson"
  local text = cjson.encode(v)
  return (text:gsub('"\\u0000moonbus%-empty%-list\\u0000"', "[]"))
end

--- Print a table of rows (lists of strings) with aligned columns.
function M.print_table(header, rows, out)
  out = out or io.stdout
  local w = {}
  for i, h in ipairs(header) do w[i] = #h end
  for _, r in ipairs(rows) do
    for i, c in ipairs(r) do w[i] = math.max(w[i] or 0, #c) end
  end
  local function line(r)
    local parts = {}
    for i, c in ipairs(r) do
      -- first column left-aligned (names), the rest right-aligned (figures)
      parts[i] = i == 1 and c .. (" "):rep(w[i] - #c) or (" "):rep(w[i] - #c) .. c
    end
    out:write(table.concat(parts, "  "), "\n")
  end
  line(header)
  for _, r in ipairs(rows) do line(r) end
end

return M
