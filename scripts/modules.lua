--- moonbus modules [KIND] [--json] [--markdown]
-- The modules and their parameters, read from the descriptors themselves;
-- --markdown writes the module reference (docs/modules.md is generated so).
local mb = require "moonbus"
local cli = require "moonbus.cli"

local p = cli.parser("modules", "List modules and their parameters.")
p:argument("kind", "one module to describe"):args("?")
p:flag("--json", "print JSON")
p:flag("--markdown", "print the Markdown module reference")
local a = cli.parse(p, { ... })

local mods = mb.modules()
if a.kind then
  local found
  local names = {}
  for _, m in ipairs(mods) do
    names[#names + 1] = m.name
    if m.name == a.kind then found = m end
  end
  if not found then
    local s = mb.suggest(a.kind, names)
    error(("unknown module '%s'%s"):format(a.kind,
      s and ("; did you mean '%s'?"):format(s) or ""), 0)
  end
  mods = { found }
end

-- Banded modules have 16 copies of each band parameter: show band 1 and say
-- so, rather than 80 lines.
local function visible(m)
  local out = {}
  for _, prm in ipairs(m.params) do
    local base, i = prm.name:match("^(.-)(%d+)$")
    if not (m.list_option and i and tonumber(i) > 1) then
      out[#out + 1] = prm
    end
  end
  return out
end

local function range(prm)
  if prm.type == "choice" then
    local c = {}
    for i, s in ipairs(prm.choices) do c[i] = '"' .. s .. '"' end
    return table.concat(c, ", ")
  elseif prm.type == "boolean" then
    return "true, false"
  elseif prm.type == "string" then
    return "text"
  end
  return ("%g .. %g"):format(prm.min, prm.max)
end

local function default(prm)
  if prm.default == nil then return "" end
  if prm.type == "choice" then return '"' .. prm.default .. '"' end
  if type(prm.default) == "number" then return ("%g"):format(prm.default) end
  return tostring(prm.default)
end

if a.json then
  -- empty Lua tables would encode as JSON objects
  for _, m in ipairs(mods) do
    if #m.inputs == 0 then m.inputs = cli.EMPTY_LIST end
    if #m.params == 0 then m.params = cli.EMPTY_LIST end
  end
  io.write(cli.json(a.kind and mods[1] or mods), "\n")
elseif a.markdown then
  local out = {}
  local function w(s) out[#out + 1] = s end
  w("# Module reference")
  w("")
  w("Generated from the module descriptors by `moonbus modules --markdown`;")
  w("a test fails when this file is stale. Units: levels and gains in dB,")
  w("short times in ms, long times in seconds, frequencies in Hz,")
  w("proportions as 0..1.")
  w("")
  for _, m in ipairs(mods) do
    w("## " .. m.name)
    w("")
    w("*" .. m.summary .. "*" .. (m.offline_only and " (offline only)" or ""))
    w("")
    w(m.doc)
    w("")
    local ins = {}
    for i, s in ipairs(m.inputs) do ins[i] = '"' .. s .. '"' end
    w("Inputs: " .. (#ins > 0 and table.concat(ins, ", ") or "none") ..
      "; output: " .. (m.output and "yes" or "none") .. ".")
    if m.list_option then
      local singular = m.list_option:gsub("s$", "")
      local numbers = false
      for _, prm in ipairs(m.params) do
        if prm.id == singular .. "1" then numbers = true end
      end
      if numbers then
        w(("Option `%s`: a list of up to %d numbers setting `%s1`, `%s2`, ...")
          :format(m.list_option, m.list_max, singular, singular))
      else
        w(("Option `%s`: a list of up to %d tables whose fields set the numbered " ..
          "parameters below (`%s[i].field` is `field<i>`)."):format(m.list_option,
          m.list_max, m.list_option))
      end
    end
    w("")
    local vis = visible(m)
    if #vis > 0 then
      w("| parameter | unit | range | default | automatable | |")
      w("|---|---|---|---|---|---|")
      for _, prm in ipairs(vis) do
        local name = prm.name
        if m.list_option and name:match("1$") then name = name:sub(1, -2) .. "<i>" end
        w(("| %s | %s | %s | %s | %s | %s |"):format(name, prm.unit, range(prm),
          default(prm), prm.automatable and "yes" or "no", prm.help))
      end
      w("")
    end
  end
  io.write(table.concat(out, "\n"))
else
  for _, m in ipairs(mods) do
    if a.kind then
      print(m.name .. ": " .. m.summary)
      print()
      print(m.doc)
      print()
      local ins = {}
      for i, s in ipairs(m.inputs) do ins[i] = s end
      print("inputs: " .. (#ins > 0 and table.concat(ins, ", ") or "none"))
      print()
      local rows = {}
      for _, prm in ipairs(visible(m)) do
        local name = prm.name
        if m.list_option and name:match("1$") then name = name:sub(1, -2) .. "<i>" end
        rows[#rows + 1] = { name, prm.unit, range(prm), default(prm), prm.help }
      end
      cli.print_table({ "parameter", "unit", "range", "default", "" }, rows)
    else
      print(("%-12s %s"):format(m.name, m.summary))
    end
  end
end
