"""Checks of a moonbus batch QC report (report.html, from
lua/moonbus/report.lua) against the report.json of the same batch, in a
real browser. A helper for tests, not a test; standard library only.

  import htmlcheck as H
  problems = H.check_report("report.html", "report.json", "shot.png")
  # [] when all is well, else one line per problem

check_report(html_path, report_json_path, png_path, size=(1200, 900))
  (a) headless chromium takes a screenshot of the page: the PNG must exist,
      be `size` pixels and not be blank (more than one colour, and more
      than 0.5 % of its pixels off the background colour);
  (b) chromium --dump-dom prints the DOM after the page's own script ran;
      check_dom() checks it.

check_dom(dom_text, report) -> problems   (report: the parsed report.json)
  - one row per job of report["jobs"] in table#jobs, each job once, by id:
    <tr id="row-ID" data-id="ID" data-verdict="VERDICT">;
  - for every figure column (COLUMNS below, which restates the page's
    contract independently of the Lua code) a cell data-key=KEY whose
    data-value equals the JSON figure within 1e-9 relative (or both
    missing: absent, null, false, NaN or infinite in the JSON, "" in the
    page) and whose text is the figure formatted as documented (fmt());
  - the output cell links to "#job-ID" with the job's output as its text
    and carries a failed job's error in its title;
  - one <section id="job-ID" class="job"> per job with the four inline
    <svg class="plot" data-plot=NAME> (wave, loudness, gr, spectrum); where
    the JSON has the series, the plot holds a <path> or <polyline> with
    data points (at least min(16, finite points) coordinate pairs), where it
    has none (an error job, no gain reduction), the plot says "no data";
  - no external references: src/srcset/poster/data/background attributes,
    href or xlink:href other than "#..." anchors, url(...) other than
    url(#...) in styles and attributes, @import, http(s):// in scripts and
    styles, and no script that fetches.

Other helpers: find_chromium(), screenshot(), dump_dom(), parse_html(),
read_png(), fmt(), figure(), missing(), rows(), sections().

Chromium runs headless with a fresh temporary --user-data-dir (so no
profile is shared between runs or with a user), as in MACHINE-NOTES
"Browser"; its D-Bus complaints on stderr are noise.
"""
import json
import math
import os
import re
import shutil
import struct
import subprocess
import tempfile
import zlib
from html.parser import HTMLParser

# The figure columns of the report's table: data-key, where the figure is in
# a job of report.json, decimals shown (0: a rounded integer).
COLUMNS = [
    ("line", ("line",), 0),
    ("integrated", ("after", "integrated"), 2),
    ("lra", ("after", "lra"), 2),
    ("true_peak", ("after", "true_peak"), 2),
    ("sample_peak", ("after", "sample_peak"), 2),
    ("plr", ("after", "plr"), 2),
    ("clipped", ("after", "clipped"), 0),
    ("dc", ("after", "dc_db"), 2),
    ("correlation", ("after", "correlation"), 3),
    ("mono_drop", ("after", "mono_drop"), 2),
    ("head_silence", ("after", "head_silence"), 2),
    ("tail_silence", ("after", "tail_silence"), 2),
    ("rate", ("after", "rate"), 0),
    ("bits", ("after", "bits"), 0),
    ("gain", ("master", "gain"), 2),
    ("max_gr", ("master", "max_gain_reduction"), 2),
    ("seconds", ("seconds",), 2),
]
PLOTS = ("wave", "loudness", "gr", "spectrum")
SEVERITY = {"error": 1, "fail": 2, "warn": 3, "pass": 4}
MISSING_TEXT = "\u2013"  # en dash

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                  "--disable-background-networking", "--disable-extensions",
                  "--mute-audio", "--hide-scrollbars"]


# --------------------------------------------------------------------------
# figures

def missing(v):
    """True if v is not a usable figure: None, a bool, a non-number, NaN or
    infinite (the page shows those as missing too)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return True
    return not math.isfinite(v)


def figure(job, path):
    """The figure at `path` in a job dict, or None when missing."""
    v = job
    for k in path:
        if not isinstance(v, dict):
            return None
        v = v.get(k)
    return None if missing(v) else v


def fmt(v, digits):
    """A figure as the report's table shows it: `digits` decimals, 0 meaning
    floor(v + 0.5) as an integer; "-0.00" shows as "0.00"; missing as an en
    dash."""
    if missing(v):
        return MISSING_TEXT
    if digits == 0:
        s = "%d" % math.floor(v + 0.5)
    else:
        s = "%.*f" % (digits, v)
    if re.fullmatch(r"-[0.]+", s):
        s = s[1:]
    return s


def same_figure(page_value, expected):
    """data-value against the JSON figure: both missing, or within 1e-9
    relative (1e-12 absolute around zero)."""
    if expected is None:
        return page_value == ""
    try:
        v = float(page_value)
    except (TypeError, ValueError):
        return False
    return math.isclose(v, expected, rel_tol=1e-9, abs_tol=1e-12)


# --------------------------------------------------------------------------
# a small DOM from html.parser

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link",
        "meta", "param", "source", "track", "wbr"}


class Node:
    __slots__ = ("tag", "attrs", "children", "parent")

    def __init__(self, tag, attrs, parent):
        self.tag = tag
        self.attrs = attrs
        self.children = []
        self.parent = parent

    def get(self, name, default=None):
        return self.attrs.get(name, default)

    def classes(self):
        return (self.attrs.get("class") or "").split()

    def text(self):
        out = []
        stack = [self]
        while stack:
            n = stack.pop()
            if isinstance(n, str):
                out.append(n)
            else:
                stack.extend(reversed(n.children))
        return "".join(out)

    def iter(self, tag=None):
        """All descendant elements (document order), optionally one tag."""
        stack = list(reversed(self.children))
        while stack:
            n = stack.pop()
            if isinstance(n, str):
                continue
            if tag is None or n.tag == tag:
                yield n
            stack.extend(reversed(n.children))

    def __repr__(self):
        return "<%s %s>" % (self.tag, " ".join('%s="%s"' % kv for kv in self.attrs.items()))


class _Builder(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {}, None)
        self.cur = self.root

    def handle_starttag(self, tag, attrs):
        n = Node(tag, {k: (v if v is not None else "") for k, v in attrs}, self.cur)
        self.cur.children.append(n)
        if tag not in VOID:
            self.cur = n

    def handle_startendtag(self, tag, attrs):
        n = Node(tag, {k: (v if v is not None else "") for k, v in attrs}, self.cur)
        self.cur.children.append(n)

    def handle_endtag(self, tag):
        # Close up to the matching open element (tolerates omitted end tags).
        n = self.cur
        while n is not None and n.tag != tag:
            n = n.parent
        if n is not None and n.parent is not None:
            self.cur = n.parent

    def handle_data(self, data):
        self.cur.children.append(data)


def parse_html(text):
    """The document as a tree of Node (tag, attrs dict, children)."""
    b = _Builder()
    b.feed(text)
    b.close()
    return b.root


def rows(doc):
    """The job rows of table#jobs, in DOM order."""
    table = next((t for t in doc.iter("table") if t.get("id") == "jobs"), None)
    if table is None:
        return []
    out = []
    for body in (n for n in table.iter("tbody")):
        out.extend(r for r in body.iter("tr"))
    return out


def sections(doc):
    """The job sections (section.job), in DOM order."""
    return [s for s in doc.iter("section") if "job" in s.classes()]


# --------------------------------------------------------------------------
# chromium

def find_chromium():
    """Path of a chromium binary, or None."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        p = shutil.which(name)
        if p:
            return p
    return None


def _chromium(args, timeout=120):
    exe = find_chromium()
    if exe is None:
        raise RuntimeError("chromium is not installed")
    with tempfile.TemporaryDirectory(prefix="mb-chromium-") as profile:
        p = subprocess.run([exe] + CHROMIUM_FLAGS + ["--user-data-dir=" + profile] + list(args),
                           capture_output=True, text=True, timeout=timeout)
    return p


def _url(path):
    return "file://" + os.path.abspath(path)


def screenshot(html_path, png_path, size=(1200, 900), timeout=120):
    """Screenshot of the page's first `size` pixels; returns chromium's
    (returncode, stderr)."""
    if os.path.exists(png_path):
        os.remove(png_path)
    p = _chromium(["--screenshot=" + os.path.abspath(png_path),
                   "--window-size=%d,%d" % tuple(size), _url(html_path)], timeout)
    return p.returncode, p.stderr


NO_SCRIPT = '<meta http-equiv="Content-Security-Policy" content="script-src \'none\'">'


def dump_dom(html_path, javascript=True, timeout=120):
    """The DOM as chromium serialises it after loading the page (and
    running its scripts). javascript=False loads a copy of the page whose
    scripts a Content-Security-Policy blocks (--blink-settings=
    scriptEnabled=false would also stop --dump-dom, which reads the DOM
    through script). Raises RuntimeError when chromium fails."""
    path, copy = html_path, None
    if not javascript:
        with open(html_path, encoding="utf-8") as f:
            text = f.read()
        m = re.search(r"<head[^>]*>", text, re.I)
        at = m.end() if m else 0
        fd, copy = tempfile.mkstemp(suffix=".html", prefix=".nojs-",
                                    dir=os.path.dirname(os.path.abspath(html_path)))
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text[:at] + NO_SCRIPT + text[at:])
        path = copy
    try:
        p = _chromium(["--dump-dom", _url(path)], timeout)
    finally:
        if copy:
            os.remove(copy)
    if p.returncode != 0 or "<html" not in p.stdout:
        raise RuntimeError("chromium --dump-dom exited %d and printed %d characters: %s"
                           % (p.returncode, len(p.stdout), _noise_free(p.stderr)[-800:]))
    return p.stdout


def _noise_free(stderr):
    """chromium's stderr without its D-Bus complaints (noise here)."""
    return "\n".join(l for l in stderr.splitlines()
                     if "dbus" not in l.lower() and "unexpected operator" not in l).strip()


# --------------------------------------------------------------------------
# PNG (zlib + struct; numpy only to speed up, when it is there)

def read_png(path):
    """(width, height, pixels): pixels a list of rows, each a bytes object
    of width * channels samples (8-bit; grey, grey+alpha, RGB, RGBA or a
    palette expanded to RGB). Interlaced or 16-bit files raise ValueError."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG file")
    pos, idat, palette, ihdr = 8, [], None, None
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"PLTE":
            palette = body
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    if ihdr is None:
        raise ValueError("no IHDR chunk")
    w, h, depth, ctype, _, _, interlace = ihdr
    if depth != 8 or interlace != 0:
        raise ValueError("unsupported PNG: bit depth %d, interlace %d" % (depth, interlace))
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[ctype]
    raw = zlib.decompress(b"".join(idat))
    stride = w * channels
    if len(raw) != h * (stride + 1):
        raise ValueError("PNG data is %d bytes, expected %d" % (len(raw), h * (stride + 1)))
    out = []
    prev = bytearray(stride)
    bpp = channels
    for y in range(h):
        ft = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        if ft == 1:      # Sub
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 255
        elif ft == 2:    # Up
            line = bytearray((a + b) & 255 for a, b in zip(line, prev))
        elif ft == 3:    # Average
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 255
        elif ft == 4:    # Paeth
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b = prev[i]
                c = prev[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                if pa <= pb and pa <= pc:
                    pr = a
                elif pb <= pc:
                    pr = b
                else:
                    pr = c
                line[i] = (line[i] + pr) & 255
        elif ft != 0:
            raise ValueError("bad PNG filter type %d in row %d" % (ft, y))
        out.append(bytes(line))
        prev = line
    if ctype == 3:
        if palette is None:
            raise ValueError("palette PNG without PLTE")
        out = [b"".join(palette[3 * i:3 * i + 3] for i in row) for row in out]
        channels = 3
    return w, h, channels, out


def png_problems(png_path, size):
    """Problems of a screenshot: missing, wrong size, blank."""
    if not os.path.exists(png_path) or os.path.getsize(png_path) == 0:
        return ["screenshot: %s was not written" % png_path]
    try:
        w, h, ch, pixels = read_png(png_path)
    except (ValueError, zlib.error, KeyError, struct.error) as e:
        return ["screenshot: %s is not a readable PNG: %s" % (png_path, e)]
    problems = []
    if (w, h) != tuple(size):
        problems.append("screenshot: %dx%d pixels, asked for %dx%d" % (w, h, size[0], size[1]))
    counts = {}
    for row in pixels:
        for i in range(0, len(row), ch):
            px = row[i:i + ch]
            counts[px] = counts.get(px, 0) + 1
    total = w * h
    background = max(counts.values()) if counts else 0
    if len(counts) <= 1:
        problems.append("screenshot: blank (one colour)")
    elif total - background < 0.005 * total:
        problems.append("screenshot: nearly blank: %d of %d pixels differ from the background"
                        % (total - background, total))
    return problems


# --------------------------------------------------------------------------
# the DOM checks

_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_URL = re.compile(r"url\(\s*(['\"]?)(.*?)\1\s*\)", re.I)
_FETCHES = re.compile(r"https?:|fetch\s*\(|XMLHttpRequest|import\s*\(|importScripts|"
                      r"new\s+(?:Worker|WebSocket|EventSource)|\.src\s*=|@import", re.I)


def _points(el):
    """Number of coordinate pairs in a path's d or a polyline's points."""
    s = el.get("d") if el.tag == "path" else el.get("points")
    return len(_NUMBER.findall(s or "")) // 2


def _finite_count(values):
    if not isinstance(values, list):
        return 0
    return sum(1 for v in values if not missing(v))


def _series_points(job, plot):
    """Finite points the JSON holds for a plot, or None when the JSON does
    not say (the series were left out of report.json)."""
    def an(which):
        a = job.get(which)
        return a if isinstance(a, dict) else None
    analyses = [a for a in (an("before"), an("after")) if a]
    if plot == "gr":
        gr = job.get("gr")
        if isinstance(gr, dict):
            return _finite_count(gr.get("values"))
        return 0 if "gr" not in job or gr is None else None
    if not analyses:
        return 0
    key = {"wave": "wave", "loudness": "short_term", "spectrum": "spectrum"}[plot]
    if all(key not in a for a in analyses):
        return None
    best = 0
    for a in analyses:
        s = a.get(key)
        if not isinstance(s, dict):
            continue
        if plot == "wave":
            n = min(_finite_count(s.get("min")), _finite_count(s.get("max")))
        elif plot == "loudness":
            n = _finite_count(s.get("values"))
        else:
            n = _finite_count(s.get("db"))
        best = max(best, n)
    return best


def _reference_problems(doc):
    problems = []
    for el in doc.iter():
        for name, value in el.attrs.items():
            v = (value or "").strip()
            lname = name.lower()
            if lname in ("src", "srcset", "poster", "data", "background", "action",
                         "formaction", "ping", "manifest", "codebase", "archive"):
                if el.tag == "object" or lname != "data" or v:
                    problems.append("external reference: <%s %s=%r>" % (el.tag, name, v[:80]))
            elif lname in ("href", "xlink:href"):
                if not v.startswith("#"):
                    problems.append("external reference: <%s %s=%r>" % (el.tag, name, v[:80]))
            for m in _URL.finditer(v):
                if not m.group(2).strip().startswith("#"):
                    problems.append("external reference: url(%s) in <%s %s>" % (m.group(2)[:80], el.tag, name))
        # (html.parser gives tag names in lower case.) Elements that exist to
        # load something have no business in a self-contained report.
        if el.tag in ("link", "iframe", "frame", "embed", "object", "img", "audio", "video",
                      "source", "base", "image", "feimage", "track", "portal"):
            problems.append("element <%s> in a self-contained page" % el.tag)
        if el.tag in ("style", "script"):
            text = el.text()
            for m in _URL.finditer(text):
                if not m.group(2).strip().startswith("#"):
                    problems.append("external reference: url(%s) in <%s>" % (m.group(2)[:80], el.tag))
            m = _FETCHES.search(text)
            if m:
                problems.append("<%s> may load something: %r" % (el.tag, m.group(0)))
    return problems


def check_dom(dom_text, report):
    """Problems of a report page's DOM against report.json (parsed)."""
    problems = []
    doc = parse_html(dom_text)
    jobs = report.get("jobs") or []
    if isinstance(jobs, dict):  # an empty Lua table may come out as {}
        jobs = list(jobs.values())

    # rows
    trs = rows(doc)
    by_id = {}
    for tr in trs:
        rid = tr.get("data-id")
        if rid is None:
            problems.append("table row without data-id: %r" % tr)
            continue
        by_id.setdefault(rid, []).append(tr)
    if len(trs) != len(jobs):
        problems.append("table has %d rows for %d jobs" % (len(trs), len(jobs)))
    ids = set()
    for job in jobs:
        jid = str(job.get("id"))
        if jid in ids:
            problems.append("report.json lists job %s twice" % jid)
        ids.add(jid)
        found = by_id.get(jid, [])
        if len(found) != 1:
            problems.append("job %s: %d table rows (want 1)" % (jid, len(found)))
            continue
        tr = found[0]
        if tr.get("id") != "row-" + jid:
            problems.append("job %s: row id %r, want 'row-%s'" % (jid, tr.get("id"), jid))
        if tr.get("data-verdict") != str(job.get("verdict", "")):
            problems.append("job %s: data-verdict %r, report.json says %r"
                            % (jid, tr.get("data-verdict"), job.get("verdict")))
        cells = {}
        for td in tr.iter("td"):
            k = td.get("data-key")
            if k:
                if k in cells:
                    problems.append("job %s: two cells data-key=%s" % (jid, k))
                cells[k] = td
        for key, path, digits in COLUMNS:
            td = cells.get(key)
            if td is None:
                problems.append("job %s: no cell data-key=%s" % (jid, key))
                continue
            want = figure(job, path)
            got = td.get("data-value")
            if got is None:
                problems.append("job %s, %s: no data-value attribute" % (jid, key))
            elif not same_figure(got, want):
                problems.append("job %s, %s: data-value %r, report.json has %r"
                                % (jid, key, got, want))
            text = td.text().strip()
            if text != fmt(want, digits):
                problems.append("job %s, %s: cell shows %r, want %r (%r to %d decimals)"
                                % (jid, key, text, fmt(want, digits), want, digits))
        out = cells.get("output")
        name = job.get("output") or job.get("input") or jid
        if out is None:
            problems.append("job %s: no output cell" % jid)
        else:
            links = [a for a in out.iter("a") if a.get("href") == "#job-" + jid]
            if not links:
                problems.append("job %s: the output cell does not link to #job-%s" % (jid, jid))
            elif links[0].text() != name:
                problems.append("job %s: output shown as %r, want %r" % (jid, links[0].text(), name))
            err = job.get("error")
            if err and str(err) not in (out.get("title") or ""):
                problems.append("job %s: the output cell's title %r lacks the error %r"
                                % (jid, out.get("title"), err))

    # sections and plots
    secs = sections(doc)
    sec_by_id = {}
    for s in secs:
        sec_by_id.setdefault(s.get("id"), []).append(s)
    if len(secs) != len(jobs):
        problems.append("%d job sections for %d jobs" % (len(secs), len(jobs)))
    for job in jobs:
        jid = str(job.get("id"))
        found = sec_by_id.get("job-" + jid, [])
        if len(found) != 1:
            problems.append("job %s: %d sections id=job-%s (want 1)" % (jid, len(found), jid))
            continue
        sec = found[0]
        err = job.get("error")
        if err and str(err) not in sec.text():
            problems.append("job %s: the detail section does not show the error %r" % (jid, err))
        plots = {}
        for svg in sec.iter("svg"):
            if "plot" in svg.classes():
                plots.setdefault(svg.get("data-plot"), []).append(svg)
        for name in PLOTS:
            got = plots.get(name, [])
            if len(got) != 1:
                problems.append("job %s: %d <svg class=plot data-plot=%s> (want 1)" % (jid, len(got), name))
                continue
            svg = got[0]
            lines = [el for el in svg.iter() if el.tag in ("path", "polyline")]
            most = max((_points(el) for el in lines), default=0)
            n = _series_points(job, name)
            if n is None:
                continue  # report.json does not carry this series
            if n > 0:
                need = min(16, n)
                if most < need:
                    problems.append("job %s, plot %s: longest path has %d points, the data %d"
                                    % (jid, name, most, n))
            elif "no data" not in svg.text():
                problems.append("job %s, plot %s: no data in report.json and no 'no data' note"
                                % (jid, name))

    problems.extend(_reference_problems(doc))
    return problems


def order_problems(dom_text, report):
    """The default order: rows and sections by severity (error, fail, warn,
    pass; an unknown verdict with the errors), then manifest order (the
    order of report.json's jobs)."""
    jobs = report.get("jobs") or []
    pos = {str(j.get("id")): i for i, j in enumerate(jobs)}
    want = [str(j.get("id")) for j in sorted(
        jobs, key=lambda j: (SEVERITY.get(j.get("verdict"), 1), pos[str(j.get("id"))]))]
    doc = parse_html(dom_text)
    problems = []
    got = [tr.get("data-id") for tr in rows(doc)]
    if got != want:
        problems.append("row order %s, want %s" % (got, want))
    got = [(s.get("id") or "")[len("job-"):] for s in sections(doc)]
    if got != want:
        problems.append("section order %s, want %s" % (got, want))
    return problems


def check_report(html_path, report_json_path, png_path, size=(1200, 900)):
    """All checks of a report page (see the module's doc); [] if all good."""
    problems = []
    if not os.path.exists(html_path):
        return ["%s does not exist" % html_path]
    try:
        with open(report_json_path, encoding="utf-8") as f:
            report = json.load(f)
    except (OSError, ValueError) as e:
        return ["cannot read %s: %s" % (report_json_path, e)]
    if find_chromium() is None:
        return ["chromium is not installed"]
    try:
        rc, err = screenshot(html_path, png_path, size)
        if rc != 0:
            problems.append("chromium --screenshot exited %d: %s" % (rc, _noise_free(err)[-500:]))
        problems.extend(png_problems(png_path, size))
    except subprocess.TimeoutExpired:
        problems.append("chromium --screenshot timed out")
    try:
        dom = dump_dom(html_path)
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        problems.append(str(e))
        return problems
    problems.extend(check_dom(dom, report))
    return problems
