--- moonbus live [--device D] [--block N] [--latency S] SCRIPT.lua [ARGS...]
--- moonbus live --devices
-- Runs a script as `moonbus run` does, except that g:render() plays the
-- graph in real time (as g:play) through the chosen device. Ctrl-C stops
-- playback cleanly; file outputs keep what was played.
local mb = require "moonbus"
local cli = require "moonbus.cli"

local usage = "moonbus live [--device NAME|NUMBER] [--block FRAMES] "
  .. "[--latency SECONDS] SCRIPT.lua [ARGS...] | moonbus live --devices"
local args = { ... }
local opts, i = {}, 1
while args[i] and args[i]:match("^%-") do
  local a = args[i]
  local k, v = a:match("^%-%-([%w-]+)=(.*)$")
  k = k or a:match("^%-%-([%w-]+)$")
  if k == "devices" then
    opts.list = true
    i = i + 1
  elseif k == "help" then
    print("usage: " .. usage)
    return
  elseif k == "device" or k == "block" or k == "latency" then
    if not v then
      v = args[i + 1]
      i = i + 1
    end
    if v == nil then cli.usage_error(("live: --%s needs a value"):format(k)) end
    if k ~= "device" then
      local n = tonumber(v)
      if not n or n <= 0 or (k == "block" and (n ~= math.floor(n) or n < 16 or n > 8192)) then
        cli.usage_error(("live: --%s %s is not %s"):format(k, v,
          k == "block" and "a whole number of frames (16 .. 8192)" or "a number of seconds > 0"))
      end
      v = n
    end
    opts[k] = v
    i = i + 1
  else
    cli.usage_error(("live: unknown option '%s' (usage: %s)"):format(a, usage))
  end
end

if opts.list then
  local rows = { { "#", "host", "name", "in", "out", "rate" } }
  for _, d in ipairs(mb.devices()) do
    rows[#rows + 1] = { tostring(d.index) .. ((d.default_output or d.default_input) and "*" or ""),
      d.host, d.name, tostring(d.inputs), tostring(d.outputs),
      ("%.0f"):format(d.default_rate) }
  end
  if #rows == 1 then
    io.stderr:write("moonbus: no audio devices (is a JACK server or a sound card there?)\n")
    os.exit(1)
  end
  local w = {}
  for _, r in ipairs(rows) do
    for c, cell in ipairs(r) do w[c] = math.max(w[c] or 0, #cell) end
  end
  for _, r in ipairs(rows) do
    local cells = {}
    for c, cell in ipairs(r) do cells[c] = cell .. (" "):rep(w[c] - #cell) end
    print((table.concat(cells, "  "):gsub("%s+$", "")))
  end
  return
end

local script = args[i]
if not script then cli.usage_error("live: give a script (usage: " .. usage .. ")") end
require("moonbus.core").set_live { device = opts.device, block = opts.block,
  latency = opts.latency }
arg = { [0] = script, table.unpack(args, i + 1) }
local chunk, err = loadfile(script)
if not chunk then
  if not io.open(script, "r") then error(("cannot open script '%s'"):format(script), 0) end
  error(err, 0)
end
chunk(table.unpack(args, i + 1))
