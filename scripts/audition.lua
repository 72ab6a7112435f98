--- moonbus audition IN [--chain CHAIN.lua] [--device D] [--block N]
---                     [--start a|b] [--no-match] [--duration S]
-- Plays IN live through a chain with a level-matched A/B switch: press a
-- (the original, turned to the chain's loudness), b (the chain), space
-- (toggle), q or Ctrl-C (stop). CHAIN.lua returns a function(g, src) that
-- adds the chain after `src` and returns its last node; without it, the
-- `moonbus master` chain at a -1 dBTP ceiling.
local mb = require "moonbus"
local cli = require "moonbus.cli"

local p = cli.parser("audition", "Play a file through a chain with a level-matched A/B switch.")
p:argument("input", "the sound file to play")
p:option("--chain", "a Lua file returning function(g, src) -> last node")
p:option("--device", "output device (name or number; moonbus live --devices)")
p:option("--block", "frames per device buffer (default: the device's)"):convert(tonumber)
p:option("--start", "the side heard first: a (original) or b (chain)", "b"):choices({ "a", "b" })
p:option("--duration", "seconds to play (default: the whole file)"):convert(tonumber)
p:flag("--no-match", "do not match the original's loudness to the chain's")
local a = cli.parse(p, { ... })

local chain
if a.chain then
  local f, err = loadfile(a.chain)
  if not f then error(("cannot load chain '%s': %s"):format(a.chain, err), 0) end
  chain = f()
  if type(chain) ~= "function" then
    error(("chain '%s' must return a function(g, src)"):format(a.chain), 0)
  end
end
local s = mb.audition { input = a.input, chain = chain, start = a.start,
  match = not a.no_match, keys = true,
  play = { device = a.device, block = a.block, duration = a.duration } }
print(("original %.1f LUFS, chain %.1f LUFS: the original played %+.2f dB"):format(
  s.loudness_a, s.loudness_b, s.a_gain))
