"""Tails: a render continues after the inputs end until every node's tail
has decayed, with a cap (issue 2, Engine). A Lua prototype echo (0.5 s
delay, declared tail 0.5 s) fed a 1 s input with an impulse at 0.9 s: the
output must be 1.5 s long and hold the echo at 1.4 s; render{tail = 0.2}
cuts it at 1.2 s; without a tail the output keeps the input's length.
Measured with soundfile/numpy."""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mbtest as T  # noqa: E402

FS = 48000


def main():
    T.require_modules("input", "output", "lua")
    d = T.tmpdir()
    src = os.path.join(d, "in.wav")
    x = np.zeros(FS)
    x[int(0.9 * FS)] = 0.5
    T.write(src, x, FS)
    script = """
local function echo(tail)
  local g = mb.graph{}
  local delay = 0.5 * 48000
  local ring, pos = {}, 0
  for i = 0, delay - 1 do ring[i] = 0 end
  local e = g:add("lua", { tail = tail, process = function(b)
    local ch = b[1]
    for i = 1, b.frames do
      local y = ring[pos]
      ring[pos] = ch[i]
      pos = (pos + 1) %% delay
      ch[i] = ch[i] + y
    end
  end })
  return g, e
end
for _, case in ipairs{ {"tail", 0.5}, {"capped", 0.5, 0.2}, {"none", 0} } do
  local g, e = echo(case[2])
  g:chain(g:add("input", { path = %s }), e,
          g:add("output", { path = case[1] .. ".wav", bits = 32 }))
  g:render{ tail = case[3] }
end
""" % T.lua_str(src)
    T.render(script, cwd=d, what="echo renders")
    for name, secs, echo_at in (("tail", 1.5, 1.4), ("capped", 1.2, None),
                                ("none", 1.0, None)):
        y, fs = T.read(os.path.join(d, name + ".wav"))
        y = y[:, 0] if y.ndim > 1 else y
        T.check(len(y) == round(secs * FS),
                "%s: output %d frames (expected %d = %.1f s)"
                % (name, len(y), round(secs * FS), secs))
        T.check(abs(y[int(0.9 * FS)] - 0.5) < 1e-7,
                "%s: the impulse is at 0.9 s (%.6f)" % (name, y[int(0.9 * FS)]))
        if echo_at:
            k = int(round(echo_at * FS))
            T.check(len(y) > k and abs(y[k] - 0.5) < 1e-7,
                    "%s: the echo is at %.1f s, inside the tail" % (name, echo_at))
    T.finish()


if __name__ == "__main__":
    main()
