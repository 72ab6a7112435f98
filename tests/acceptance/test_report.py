#!/usr/bin/python3
"""Acceptance: the batch QC report page (lua/moonbus/report.lua), checked in
headless chromium against the report.json of the same batch.

The issue: "`moonbus batch` writes report.json and one self-contained
report.html that an operations person opens to see at a glance which tracks
fail: failures first, sortable, one detail section per job with four plots,
no network resources, user file names escaped."

The batch (built in Lua, run through `moonbus run`): five jobs in manifest
order with plausible series (400-column waveform, short-term loudness every
0.5 s with silent holes given as nil in one job and false in another,
120-band spectrum, limiter gain reduction every 0.1 s):
  line 2  pass   stereo, spotify; mono drop -0.0004 dB (shows "0.00")
  line 3  warn   output and input named <a&b>"'.wav; a mono file
                 (correlation and mono drop nil), DC of -inf dB (missing)
  line 4  pass   no gain-reduction series ("no data" in its plot)
  line 5  error  failed job: no analyses, no series, an error message with
                 <, &, " in it
  line 6  fail   cd target (no LUFS figure, 16 bits, 44.1 kHz), clipped
                 samples, 7 dB of gain reduction
report.json is that table through lua-cjson (non-finite figures as null,
as the batch runner must write them).

What is asserted, and against what:
  page (no browser)  the raw file parsed with html.parser passes
                 htmlcheck.check_dom (the page without JavaScript: rows,
                 figures, sections, plots, no external references); rows and
                 sections in the default order error, fail, warn, pass, then
                 manifest order; no raw `<a&b>` and the escaped name present;
                 one inline <script> without src.
  browser        htmlcheck.check_report: screenshot 1200x900, not blank; the
                 DOM after the page's script passes check_dom; the default
                 order holds after the script ran; the sorting script ran
                 (header buttons, data-sortable); the page title and the
                 user's file name read back exactly (escaping round-trips).
                 The DOM with JavaScript disabled passes check_dom and keeps
                 the default order.
  sorting        a copy of the page with a probe script that clicks headers:
                 Integrated ascending then descending (missing figures last
                 both ways, ties in default order), Target as text, Verdict
                 by severity; aria-sort follows.
  the checker    check_dom finds planted faults in a copy (a wrong
                 data-value, a wrong rounding, a missing row, an external
                 image, a url() in a style, a plot without its path).
  speed          1000 jobs render in under 3 s (about a second is the aim;
                 the figure is printed; not timed under sanitizers).
Without chromium the browser parts are skipped with a note (the page
checks still run); bootstrap installs chromium for CI.
"""
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mbtest as T  # noqa: E402
import htmlcheck as H  # noqa: E402

NAME = "masters/<a&b>\"'.wav"
TITLE = "moonbus batch: <catalogue> & \"co\".csv"
ERROR = "cannot read 'mixes/04 <bad>.wav': No such file & \"more\""

LUA = r'''
local report = require "moonbus.report"
local cjson = require "cjson"

local NAME, TITLE, ERROR = __NAME__, __TITLE__, __ERROR__

-- A deterministic pseudo-random walk, so the series look like music.
local seed = 12345
local function rnd()
  seed = (seed * 1103515245 + 12345) % 2147483648
  return seed / 2147483648
end

-- An analysis as moonbus.core.analyse gives it: `level` shifts the levels
-- (dB), `holes` makes the first 4 s of short-term loudness silent (nil or
-- false), `channels` 1 gives a mono file.
local function analysis(o)
  local dur, level = o.duration, o.level
  local a = {
    rate = o.rate or 48000, channels = o.channels or 2, duration = dur,
    frames = math.floor(dur * (o.rate or 48000)), bits = o.bits or 24, float = false,
    format = "WAV PCM_" .. (o.bits or 24),
    integrated = -14.0123 + level, lra = 6.2, true_peak = -1.02 + level,
    sample_peak = -1.3 + level, plr = 12.99, rms = -16.5 + level, clipped = o.clipped or 0,
    dc_db = -92.1, correlation = 0.8312, mono_drop = -1.4, head_silence = 0.0,
    tail_silence = 1.25,
  }
  local mn, mx, amp = {}, {}, 10 ^ ((-1.5 + level) / 20)
  for i = 1, 400 do
    local e = amp * (0.6 + 0.35 * math.sin(i / 37)) * (0.85 + 0.15 * rnd())
    mx[i] = math.min(1, e)
    mn[i] = -math.min(1, e * (0.9 + 0.1 * rnd()))
  end
  a.wave = { min = mn, max = mx }
  local st = {}
  for i = 1, math.floor(dur / 0.5) do
    if i <= 8 and o.holes == "nil" then
      st[i] = nil -- silence as a nil hole (# may then say anything)
    elseif i <= 8 and o.holes == false then
      st[i] = false -- silence as false
    else
      st[i] = a.integrated + 3 * math.sin(i / 20) + rnd() - 0.5
    end
  end
  a.short_term = { interval = 0.5, values = st }
  local f, db = {}, {}
  for i = 1, 120 do
    f[i] = 20 * 1000 ^ ((i - 1) / 119)
    db[i] = -25 + level - 9 * math.abs(math.log(f[i] / 120, 2)) + 2 * rnd()
  end
  a.spectrum = { freq = f, db = db }
  return a
end

local function gr(duration, depth)
  local v = {}
  for i = 1, math.floor(duration / 0.1) do
    v[i] = math.max(0, depth * math.sin(i / 40) ^ 8 - 0.2 * rnd())
  end
  return { interval = 0.1, values = v }
end

local function checks(after, verdicts)
  verdicts = verdicts or {}
  local list = {
    { "integrated", "Integrated loudness", after.integrated, "LUFS", "-14.0 ±0.5" },
    { "true_peak", "True peak", after.true_peak, "dBTP", "<= -1.0" },
    { "lra", "Loudness range", after.lra, "LU", "<= 20" },
    { "clipped", "Clipped samples", after.clipped, "samples", "0" },
    { "correlation", "Correlation", after.correlation, "", ">= 0" },
    { "dc", "DC offset", after.dc_db, "dB", "<= -60" },
  }
  local out = {}
  for i, c in ipairs(list) do
    out[i] = { name = c[1], label = c[2], value = c[3], unit = c[4], expect = c[5],
               verdict = verdicts[c[1]] or "pass" }
  end
  return out
end

local spotify = { name = "spotify", lufs = -14, ceiling = -1, bits = 24, rate = 48000 }
local cd = { name = "cd", ceiling = -0.3, bits = 16, rate = 44100 }

local jobs = {}
do -- line 2: pass
  local after = analysis{ duration = 200, level = 0, holes = "nil" }
  after.mono_drop = -0.0004
  jobs[#jobs + 1] = { id = "3fa9c01b22de", line = 2, input = "mixes/01 Intro.wav",
    output = "masters/01 Intro.wav", target = spotify, status = "done", verdict = "pass",
    seconds = 3.14159, master = { gain = 4.1, max_gain_reduction = 2.3, passes = 2, limiter_ceiling = -1 },
    before = analysis{ duration = 200, level = -6 }, after = after,
    checks = checks(after), gr = gr(200, 2.3) }
end
do -- line 3: warn, the awkward name, a mono file, DC of -inf dB
  local before = analysis{ duration = 150, level = -5, channels = 1, holes = false }
  local after = analysis{ duration = 150, level = 0.1, channels = 1, holes = false }
  after.correlation, after.mono_drop, after.dc_db = nil, nil, -math.huge
  after.true_peak = -0.95
  jobs[#jobs + 1] = { id = "0b1c2d3e4f50", line = 3, input = "mixes/<a&b>\"'.wav", output = NAME,
    target = spotify, status = "done", verdict = "warn", seconds = 2.5,
    master = { gain = 5.0, max_gain_reduction = 1.1, passes = 1, limiter_ceiling = -1 },
    before = before, after = after, checks = checks(after, { true_peak = "warn" }),
    gr = gr(150, 1.1) }
end
do -- line 4: pass without a gain-reduction series
  local after = analysis{ duration = 90, level = 0 }
  jobs[#jobs + 1] = { id = "aa00bb11cc22", line = 4, input = "mixes/03 Ballad.wav",
    output = "masters/03 Ballad.wav", target = spotify, status = "done", verdict = "pass",
    seconds = 1.5, master = { gain = 2.0, max_gain_reduction = 0, passes = 1, limiter_ceiling = -1 },
    before = analysis{ duration = 90, level = -2 }, after = after, checks = checks(after) }
end
do -- line 5: a failed job
  jobs[#jobs + 1] = { id = "dead00beef01", line = 5, input = "mixes/04 <bad>.wav",
    output = "masters/04 <bad>.wav", target = spotify, status = "failed", error = ERROR,
    verdict = "error", seconds = 0.02 }
end
do -- line 6: fail, cd target without a loudness figure
  local after = analysis{ duration = 240, level = 2, rate = 44100, bits = 16, clipped = 12 }
  after.true_peak = 0.4
  jobs[#jobs + 1] = { id = "c0ffee000006", line = 6, input = "mixes/05 Loud.wav",
    output = "masters/05 Loud.wav", target = cd, status = "done", verdict = "fail",
    seconds = 4.75, master = { gain = 0, max_gain_reduction = 7.2, passes = 3, limiter_ceiling = -0.3 },
    before = analysis{ duration = 240, level = 1.5, clipped = 40 }, after = after,
    checks = checks(after, { true_peak = "fail", clipped = "fail" }), gr = gr(240, 7.2) }
end

local batch = {
  title = TITLE, manifest = "catalogue.csv", generated = "2026-11-21T10:00:00Z",
  moonbus = "0.5.0", shard = { index = 1, count = 4 },
  summary = { jobs = 5, pass = 2, warn = 1, fail = 1, error = 1 },
  jobs = jobs,
}

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

-- report.json as the batch runner writes it: JSON has no NaN or infinity,
-- so those become null; nil holes in series become null too.
local function clean(v)
  if type(v) == "number" then
    if v ~= v or v == math.huge or v == -math.huge then return nil end
    return v
  end
  if type(v) ~= "table" then return v end
  local n = 0
  for k in pairs(v) do
    if math.type(k) == "integer" and k > n then n = k end
  end
  local out = {}
  if n > 0 then
    for i = 1, n do
      local x = clean(v[i])
      if x == nil then x = cjson.null end
      out[i] = x
    end
  else
    for k, x in pairs(v) do out[k] = clean(x) end
  end
  return out
end

write("report.html", report.html(batch))
write("report.json", cjson.encode(clean(batch)))

-- Speed: 1000 jobs (copies of these five with their own ids).
local big = { title = "speed", jobs = {} }
for i = 1, 1000 do
  local src = jobs[(i - 1) % #jobs + 1]
  local j = {}
  for k, v in pairs(src) do j[k] = v end
  j.id, j.line = string.format("%012x", i), i + 1
  big.jobs[i] = j
end
collectgarbage()
local t = os.clock()
local html = report.html(big)
emit("seconds_1000", os.clock() - t)
emit("bytes_1000", #html)
local _, rows = html:gsub('<tr id="row%-', "")
emit("rows_1000", rows)
'''


def lua_script():
    return (LUA.replace("__NAME__", T.lua_str(NAME))
               .replace("__TITLE__", T.lua_str(TITLE))
               .replace("__ERROR__", T.lua_str(ERROR)))


def report_problems(what, problems):
    T.check(not problems, "%s: %d problems%s" % (what, len(problems),
            "".join("\n        " + p for p in problems[:40])))


def default_order(jobs):
    pos = {j["id"]: i for i, j in enumerate(jobs)}
    return sorted(jobs, key=lambda j: (H.SEVERITY.get(j.get("verdict"), 1), pos[j["id"]]))


def expected_numeric(jobs, path, descending):
    """Ids sorted by a figure (stable on the default order), missing last."""
    base = default_order(jobs)
    have = [j for j in base if H.figure(j, path) is not None]
    lack = [j for j in base if H.figure(j, path) is None]
    # Negated rather than reverse=True, which would reverse the ties too.
    have.sort(key=lambda j: -H.figure(j, path) if descending else H.figure(j, path))
    return [j["id"] for j in have + lack]


SORT_PROBE = r'''
<script>
(function () {
  var out = {};
  function order() {
    return Array.prototype.map.call(document.querySelectorAll("#jobs tbody tr"),
      function (r) { return r.getAttribute("data-id"); });
  }
  function click(key) {
    var b = document.querySelector('#jobs th[data-key="' + key + '"] button');
    if (!b) throw new Error("no sort button on column " + key);
    b.click();
    return document.querySelector('#jobs th[data-key="' + key + '"]').getAttribute("aria-sort");
  }
  try {
    out.initial = order();
    out.aria_integrated_1 = click("integrated"); out.integrated_1 = order();
    out.aria_integrated_2 = click("integrated"); out.integrated_2 = order();
    out.aria_target_1 = click("target"); out.target_1 = order();
    out.aria_target_2 = click("target"); out.target_2 = order();
    out.aria_verdict_1 = click("verdict"); out.verdict_1 = order();
    out.aria_integrated_after = document.querySelector('#jobs th[data-key="integrated"]').getAttribute("aria-sort");
  } catch (e) {
    out.error = String(e);
  }
  var pre = document.createElement("pre");
  pre.id = "sort-probe";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
</script>
'''


def test_page(d, report, raw):
    jobs = report["jobs"]
    report_problems("page without a browser (raw file, as with JavaScript off)",
                    H.check_dom(raw, report))
    report_problems("default order in the file (error, fail, warn, pass, then manifest)",
                    H.order_problems(raw, report))
    T.check("<a&b>" not in raw and "<bad>" not in raw and "<catalogue>" not in raw,
            "no raw user text with < or & in the file")
    esc = "&lt;a&amp;b&gt;&quot;&#39;.wav"
    T.check(esc in raw, "the file name appears escaped as %s" % esc)
    doc = H.parse_html(raw)
    scripts = list(doc.iter("script"))
    T.check(len(scripts) == 1 and "src" not in scripts[0].attrs and "sort" in scripts[0].text(),
            "one inline sorting <script> without src (found %d)" % len(scripts))
    head = [th.get("data-key") for th in doc.iter("th") if th.get("data-key")]
    want = ["verdict", "line", "output", "target"] + [k for k, _, _ in H.COLUMNS[1:]]
    T.check(head == want, "columns in the documented order: %s" % head)
    badges = " ".join(re.sub(r"\s+", " ", s.text()) for s in doc.iter("span")
                      if "badge" in s.classes() and s.parent.tag == "p")
    T.check(all(x in badges for x in ("1 error", "1 fail", "1 warn", "2 pass")),
            "summary badges: %r" % badges)
    return jobs


def test_browser(d, report, html, png):
    jobs = report["jobs"]
    problems = H.check_report(html, os.path.join(d, "report.json"), png)
    report_problems("htmlcheck.check_report (screenshot + DOM after the page's script)", problems)
    try:
        dom = H.dump_dom(html)
    except RuntimeError as e:
        T.check(False, str(e))
        return
    report_problems("default order after the page's script ran", H.order_problems(dom, report))
    doc = H.parse_html(dom)
    table = next(t for t in doc.iter("table") if t.get("id") == "jobs")
    buttons = [b for b in table.iter("button")]
    T.check(table.get("data-sortable") == "yes" and len(buttons) == len(H.COLUMNS) + 3,
            "sorting script ran: data-sortable=%r, %d header buttons"
            % (table.get("data-sortable"), len(buttons)))
    title = next(doc.iter("title")).text()
    T.check(title == TITLE, "page title reads back exactly: %r" % title)
    link = [a.text() for a in doc.iter("a") if a.get("href") == "#job-0b1c2d3e4f50"]
    T.check(link == [NAME], "file name reads back exactly in the table: %r" % link)
    heads = [h.text() for s in H.sections(doc) if s.get("id") == "job-0b1c2d3e4f50"
             for h in s.iter("h2")]
    T.check(len(heads) == 1 and NAME in heads[0], "and in its section heading: %r" % heads)
    err = [s.text() for s in H.sections(doc) if s.get("id") == "job-dead00beef01"]
    T.check(err and ERROR in err[0], "the error message reads back exactly in its section")

    try:
        nojs = H.dump_dom(html, javascript=False)
        ran = any(t.get("data-sortable") for t in H.parse_html(nojs).iter("table"))
        T.check(not ran, "with JavaScript disabled the sorting script did not run")
        report_problems("DOM with JavaScript disabled", H.check_dom(nojs, report))
        report_problems("default order with JavaScript disabled", H.order_problems(nojs, report))
    except RuntimeError as e:
        T.check(False, "JavaScript disabled: %s" % e)

    # Sorting: a copy of the page with a probe that clicks headers.
    with open(html, encoding="utf-8") as f:
        page = f.read()
    probe = os.path.join(d, "sort-probe.html")
    with open(probe, "w", encoding="utf-8") as f:
        f.write(page.replace("</body>", SORT_PROBE + "</body>"))
    out = None
    try:
        pdoc = H.parse_html(H.dump_dom(probe))
        pre = [p for p in pdoc.iter("pre") if p.get("id") == "sort-probe"]
        out = json.loads(pre[0].text()) if pre else None
    except (RuntimeError, ValueError) as e:
        T.note("sort probe: %s" % e)
    if not T.check(out is not None and "error" not in out,
                   "sort probe ran: %s" % (out.get("error") if out else "no output")):
        return
    base = [j["id"] for j in default_order(jobs)]
    path = ("after", "integrated")
    T.check(out["initial"] == base, "probe: initial order is the default order")
    want = expected_numeric(jobs, path, False)
    T.check(out["integrated_1"] == want and out["aria_integrated_1"] == "ascending",
            "click Integrated: ascending, missing last: %s (want %s), aria-sort %s"
            % (out["integrated_1"], want, out["aria_integrated_1"]))
    want = expected_numeric(jobs, path, True)
    T.check(out["integrated_2"] == want and out["aria_integrated_2"] == "descending",
            "click again: descending, missing still last: %s (want %s), aria-sort %s"
            % (out["integrated_2"], want, out["aria_integrated_2"]))
    by_target = {j["id"]: j["target"]["name"] for j in jobs}
    want = sorted(base, key=lambda i: by_target[i])  # "cd" < "spotify"; stable
    T.check(out["target_1"] == want, "click Target: text order %s (want %s)" % (out["target_1"], want))
    want = sorted(base, key=lambda i: by_target[i] != "spotify")
    T.check(out["target_2"] == want, "click again: reversed, ties in default order: %s (want %s)"
            % (out["target_2"], want))
    T.check(out["verdict_1"] == base and out["aria_integrated_after"] is None,
            "click Verdict: by severity (= the default order): %s; Integrated's aria-sort cleared"
            % out["verdict_1"])


def test_checker_catches(raw, report):
    """htmlcheck must not be vacuous: faults planted in a copy are found."""
    def found(what, text, pattern):
        problems = H.check_dom(text, report)
        T.check(any(re.search(pattern, p) for p in problems),
                "checker finds %s: %s" % (what, problems[:3]))

    found("a wrong data-value", raw.replace('data-key="lra" data-value="6.2"', 'data-key="lra" data-value="6.3"', 1),
          r"lra: data-value")
    found("a wrong rounding", raw.replace(">6.20<", ">6.2<", 1), r"lra: cell shows")
    m = re.search(r'<tr id="row-aa00bb11cc22".*?</tr>', raw, re.S)
    found("a missing row", raw.replace(m.group(0), "", 1), r"aa00bb11cc22: 0 table rows")
    found("an external image", raw.replace("<main>", '<main><img src="https://example.com/x.png">', 1),
          r"external reference")
    found("a url() in a style", raw.replace("</style>", "body{background:url(//cdn.example/x.png)}</style>", 1),
          r"url\(//cdn")
    sec = re.search(r'<section id="job-3fa9c01b22de".*?</section>', raw, re.S).group(0)
    stripped = re.sub(r'(<svg[^>]*data-plot="spectrum".*?</svg>)',
                      lambda m: re.sub(r"<path[^>]*/>", "", m.group(1)), sec, flags=re.S)
    found("a plot without its data", raw.replace(sec, stripped, 1), r"plot spectrum")


def main():
    d = T.tmpdir()
    vals = T.render(lua_script(), cwd=d, what="report.html(batch)")
    html, rjson = os.path.join(d, "report.html"), os.path.join(d, "report.json")
    with open(html, encoding="utf-8") as f:
        raw = f.read()
    with open(rjson, encoding="utf-8") as f:
        report = json.load(f)
    T.check(len(report["jobs"]) == 5, "report.json written with 5 jobs")

    test_page(d, report, raw)
    test_checker_catches(raw, report)

    secs = vals.get("seconds_1000")
    T.check(vals.get("rows_1000") == 1000, "1000 jobs give 1000 rows (%s), %.1f MB"
            % (vals.get("rows_1000"), (vals.get("bytes_1000") or 0) / 1e6))
    if os.environ.get("MOONBUS_SANITIZED"):
        T.note("1000 jobs rendered in %.2f s CPU (sanitized build: not checked)" % secs)
    else:
        T.check(secs is not None and secs < 3.0,
                "1000 jobs render in %.2f s CPU (limit 3 s; aim about 1 s)" % secs)

    if H.find_chromium() is None:
        print("SKIP  browser checks: chromium is not installed (apt-get install "
              "--no-install-recommends chromium; ./bootstrap test installs it). "
              "The page itself was checked above.", flush=True)
        T.finish()
    test_browser(d, report, html, os.path.join(d, "report.png"))
    T.finish()


if __name__ == "__main__":
    main()
