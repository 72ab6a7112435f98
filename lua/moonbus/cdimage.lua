--- moonbus.cdimage: the metadata of one continuous CD image: ISRC and
-- UPC/EAN validators, a CUE sheet and a cdrdao TOC file.
--
--   local cd = require "moonbus.cdimage"
--   local isrc = assert(cd.check_isrc("gb-aye-26-00001"))   --> "GBAYE2600001"
--   local text = cd.cue{
--     title = "Night Drive", performer = "The Moonbus Band",
--     catalog = "0036000291452", file = "album.wav", frames = 4200,
--     tracks = {
--       { title = "Intro", isrc = isrc, index0 = 0, index1 = 150 },
--       { title = "Drive", index1 = 900 },
--     },
--   }
--
-- Units. Every position and length is a whole number of CD frames (also
-- called sectors or blocks): 1/75 s, 588 stereo samples at 44.1 kHz, 2352
-- bytes of 16-bit PCM (IEC 60908, the Red Book). Positions count from the
-- first sample of the image file, so every index lies on a frame boundary
-- by construction, and a sample offset is frames * 588.
--
-- Layout. Track n's section of the image runs from its INDEX 00 (the gap
-- before it, `index0`) or, without a gap, its INDEX 01 (`index1`) up to the
-- next track's section, the last one to the end of the image (`frames`):
-- the tracks cover the image contiguously and every frame belongs to one
-- track, as on the disc. The image starts with track 1's section, so a
-- gap at the image start is track 1's pregap (INDEX 00 at 00:00:00).
--
-- Text (titles, performers, the file name) is written as given, between
-- double quotes. A double quote, a backslash or a control character is
-- refused: a CUE sheet has no escape syntax (cuetools keeps `\"` as two
-- characters), while cdrdao's TOC reader treats a backslash as the start of
-- an escape, so only text without them reads back the same in both.
-- CD-TEXT on the disc is 8-bit text; non-ASCII text is written as given
-- (UTF-8), and is shown right by players that read CD-TEXT as UTF-8 only.
--
-- Errors in the album table raise `"album: ..."` naming the track by
-- number and title; the validators return nil and the reason instead, so a
-- caller can collect every bad code of a catalogue before stopping.

local M = {}

--- Samples (per channel) in one CD frame: 44100 / 75 (IEC 60908).
M.FRAME = 588
--- CD frames per second (IEC 60908).
M.FPS = 75
--- The image's sample rate, Hz: the Red Book's only rate.
M.RATE = 44100
--- Red Book minimum track length, frames (4 s). Sources differ on whether
-- the pause (INDEX 00) counts; cdrdao, which writes the disc, measures from
-- INDEX 01 to the track's end and refuses a TOC that is shorter
-- (Track::check: "Length is shorter than 4 seconds"), so we do too.
M.MIN_TRACK = 4 * 75
--- At most 99 tracks on a disc: track numbers are two BCD digits in the
-- Q sub-channel (IEC 60908), 01..99.
M.MAX_TRACKS = 99
--- The largest position mm:ss:ff can write: 99:59:74.
M.MAX_MSF = (99 * 60 + 59) * 75 + 74
--- CUE sheets (the CDRWIN format) allow at most 80 characters of TITLE
-- and PERFORMER.
M.MAX_TEXT = 80

--- "mm:ss:ff" for a count of frames (minutes, seconds, frames 0..74), the
-- notation of both CUE sheets and cdrdao TOC files. A disc holds about 80
-- minutes; the notation's two minute digits stop at 99:59:74, and a larger
-- count is an error rather than a three-digit field readers would refuse.
function M.msf(frames)
  local f = math.tointeger(frames)
  if f == nil or f < 0 then
    error(("cdimage.msf: %s is not a whole, non-negative number of frames")
      :format(tostring(frames)), 0)
  end
  if f > M.MAX_MSF then
    error(("cdimage.msf: %d frames is past 99:59:74 (%d frames), the largest "
      .. "position mm:ss:ff can write"):format(f, M.MAX_MSF), 0)
  end
  return ("%02d:%02d:%02d"):format(f // (60 * 75), f // 75 % 60, f % 75)
end

local ISRC_SHAPE = "12 characters of CC-XXX-YY-NNNNN (ISO 3901)"

-- The ISRC's fields: name, first and last character, shape, in words.
local ISRC_FIELDS = {
  { "country code", 1, 2, "^[A-Z][A-Z]$", "two letters A-Z" },
  { "registrant", 3, 5, "^[A-Z0-9][A-Z0-9][A-Z0-9]$", "three letters A-Z or digits" },
  { "year", 6, 7, "^%d%d$", "two digits" },
  { "designation", 8, 12, "^%d%d%d%d%d$", "five digits" },
}

--- Check an ISRC (ISO 3901): 2 letters of country code, 3 letters or digits
-- of registrant, 2 digits of year of reference, 5 digits of designation.
-- The display form CC-XXX-YY-NNNNN and lower case are accepted; the result
-- is the 12-character form the CUE sheet and the disc's Q sub-channel
-- carry, upper case. The country code is checked for shape only: some
-- issued prefixes (QM, QZ, ...) are not ISO 3166 countries.
-- Returns the normalised code, or nil and why.
function M.check_isrc(s)
  if type(s) ~= "string" then
    return nil, ("ISRC must be a string, got %s; expected %s"):format(type(s), ISRC_SHAPE)
  end
  local u = s:upper()
  local code = u
  if u:find("-", 1, true) then
    -- The display form has exactly three hyphens, after CC, XXX and YY.
    local cc, xxx, yy, nnnnn = u:match("^(%w%w)%-(%w%w%w)%-(%w%w)%-(%w%w%w%w%w)$")
    if not cc then
      return nil, ("ISRC '%s': hyphens out of place; expected %s"):format(s, ISRC_SHAPE)
    end
    code = cc .. xxx .. yy .. nnnnn
  end
  if #code ~= 12 then
    return nil, ("ISRC '%s': %d characters; expected %s"):format(s, #code, ISRC_SHAPE)
  end
  for _, f in ipairs(ISRC_FIELDS) do
    local part = code:sub(f[2], f[3])
    if not part:match(f[4]) then
      return nil, ("ISRC '%s': %s '%s' must be %s; expected %s")
        :format(s, f[1], part, f[5], ISRC_SHAPE)
    end
  end
  return code
end

--- The GS1 mod-10 check digit of a string of digits (the payload, without
-- its check digit): weights 3, 1, 3, ... from the rightmost payload digit,
-- and the check digit brings the weighted sum up to a multiple of 10.
local function gs1_check_digit(payload)
  local sum, weight = 0, 3
  for i = #payload, 1, -1 do
    sum = sum + (payload:byte(i) - 48) * weight
    weight = 4 - weight
  end
  return (10 - sum % 10) % 10
end
M.gs1_check_digit = gs1_check_digit

--- Check a UPC-A (12 digits) or EAN-13 (13 digits) and its GS1 check digit.
-- Returns the code as 13 digits (a UPC-A gets a leading 0, which is how
-- GS1 writes a UPC-A as an EAN-13, leaving its check digit valid): the
-- form the CUE sheet's CATALOG and cdrdao's CATALOG take (the disc's Media
-- Catalogue Number is 13 digits). Returns nil and why otherwise.
function M.check_upc(s)
  if type(s) ~= "string" then
    return nil, ("UPC/EAN must be a string, got %s; expected 12 digits (UPC-A) "
      .. "or 13 (EAN-13)"):format(type(s))
  end
  if not s:match("^%d+$") then
    return nil, ("UPC/EAN '%s': digits only; expected 12 digits (UPC-A) or 13 (EAN-13)")
      :format(s)
  end
  if #s ~= 12 and #s ~= 13 then
    return nil, ("UPC/EAN '%s': %d digits; expected 12 digits (UPC-A) or 13 (EAN-13)")
      :format(s, #s)
  end
  local want = gs1_check_digit(s:sub(1, -2))
  local got = s:byte(-1) - 48
  if got ~= want then
    return nil, ("UPC/EAN '%s': check digit is %d, expected %d (GS1 mod-10)")
      :format(s, got, want)
  end
  return #s == 12 and "0" .. s or s
end

-- ---------------------------------------------------------------------------
-- The album table

local album_keys = { title = 1, performer = 2, catalog = 3, file = 4, frames = 5, tracks = 6 }
local track_keys = { title = 1, performer = 2, isrc = 3, index0 = 4, index1 = 5 }

local function fail(fmt, ...)
  error("album: " .. fmt:format(...), 0)
end

--- "track 3 'Night Drive'" (or "track 3" without a title), for errors.
local function name(i, t)
  if type(t) == "table" and type(t.title) == "string" then
    return ("track %d '%s'"):format(i, t.title)
  end
  return ("track %d"):format(i)
end

--- Refuse keys outside `allowed` (typos such as `index_1` would otherwise
-- silently drop a gap), with the nearest key as a hint when moonbus.core
-- is there to compute it.
local function check_keys(tbl, allowed, what)
  for k in pairs(tbl) do
    if not allowed[k] then
      local hint = ""
      local ok, core = pcall(require, "moonbus.core")
      if ok and type(k) == "string" and type(core) == "table" and core.suggest then
        local names = {}
        for n in pairs(allowed) do names[#names + 1] = n end
        table.sort(names)
        local s = core.suggest(k, names)
        if s then hint = ("; did you mean '%s'?"):format(s) end
      end
      fail("%s: unknown key '%s'%s", what, tostring(k), hint)
    end
  end
end

--- A text field: a string without characters neither format can carry
-- (see the header); a title or performer is at most 80 characters (the
-- CUE sheet's limit), a file name (`is_file`) has no limit.
local function check_text(v, what, field, is_file)
  if v == nil then return nil end
  if type(v) ~= "string" then
    fail("%s: %s must be a string, got %s", what, field, type(v))
  end
  if v:find('["\\]') then
    fail("%s: %s '%s' contains a double quote or a backslash, which a CUE sheet "
      .. "cannot carry and a TOC would read as an escape", what, field, v)
  end
  if v:find("[%c]") then
    fail("%s: %s contains a control character (a line break?)", what, field)
  end
  local n = utf8.len(v) or #v
  if not is_file and n > M.MAX_TEXT then
    fail("%s: %s is %d characters; a CUE sheet allows %d", what, field, n, M.MAX_TEXT)
  end
  return v
end

local function frame_value(v, what, field)
  local f = math.tointeger(v)
  if f == nil or f < 0 then
    fail("%s: %s must be a whole, non-negative number of CD frames (588 samples), got %s",
      what, field, tostring(v))
  end
  return f
end

--- Check an album table and work out each track's section of the image.
-- Returns a new table: the album's normalised fields (catalog as 13
-- digits, ISRCs as 12 characters, each track's performer defaulting to the
-- album's) and, per track, `start` (first frame of its section: INDEX 00,
-- or INDEX 01 without a gap; 0 for track 1), `index1`, `stop` (first frame
-- after it) and `pregap` (index1 - start), all in frames. Raises an
-- "album: ..." error naming the track on any fault.
function M.layout(album)
  if type(album) ~= "table" then
    fail("the album must be a table, got %s", type(album))
  end
  check_keys(album, album_keys, "the album table")
  local out = {
    title = check_text(album.title, "the album", "title"),
    performer = check_text(album.performer, "the album", "performer"),
  }
  if album.file == nil or album.file == "" then
    fail("give `file`, the image's name as the sheets should name it")
  end
  out.file = check_text(album.file, "the album", "file", true)
  if album.catalog ~= nil then
    local c, why = M.check_upc(album.catalog)
    if not c then fail("catalog: %s", why) end
    out.catalog = c
  end
  if album.frames == nil then
    fail("give `frames`, the image's length in CD frames (588 samples)")
  end
  out.frames = frame_value(album.frames, "the album", "frames")
  if out.frames > M.MAX_MSF then
    fail("the image is %d frames, past 99:59:74, the last position a CUE sheet "
      .. "or TOC can write", out.frames)
  end

  local tracks = album.tracks
  if type(tracks) ~= "table" or #tracks == 0 then
    fail("give `tracks`, a list of at least one track")
  end
  if #tracks > M.MAX_TRACKS then
    fail("%d tracks; a CD holds at most %d (IEC 60908)", #tracks, M.MAX_TRACKS)
  end
  for k in pairs(tracks) do
    if math.type(k) ~= "integer" or k < 1 or k > #tracks then
      fail("`tracks` must be a list (1..n) of tracks; found key '%s'", tostring(k))
    end
  end

  out.tracks = {}
  for i, t in ipairs(tracks) do
    local what = name(i, t)
    if type(t) ~= "table" then fail("%s must be a table, got %s", what, type(t)) end
    check_keys(t, track_keys, what)
    local o = {
      number = i,
      title = check_text(t.title, what, "title"),
      performer = check_text(t.performer, what, "performer") or out.performer,
    }
    if t.isrc ~= nil then
      local c, why = M.check_isrc(t.isrc)
      if not c then fail("%s: %s", what, why) end
      o.isrc = c
    end
    if t.index1 == nil then fail("%s: give index1, the frame of INDEX 01", what) end
    o.index1 = frame_value(t.index1, what, "index1")
    if t.index0 ~= nil then
      local i0 = frame_value(t.index0, what, "index0")
      if i0 > o.index1 then
        fail("%s: INDEX 00 at %s comes after INDEX 01 at %s", what,
          M.msf(i0), M.msf(o.index1))
      end
      o.start = i0 -- index0 == index1 is a gap of no frames: no INDEX 00
    else
      o.start = o.index1
    end
    if i == 1 and o.start > 0 then
      if t.index0 ~= nil then
        -- Frames 0..index0 would belong to no track.
        fail("%s: the image must start with track 1, but its INDEX 00 is at %s; "
          .. "give index0 = 0 (or leave it out) for a gap at the start",
          what, M.msf(o.start))
      end
      o.start = 0 -- a gap at the image start is track 1's pregap
    end
    if i > 1 then
      local prev = out.tracks[i - 1]
      if o.start <= prev.index1 then
        fail("%s: its %s at %s is not after INDEX 01 of %s at %s; indexes must increase",
          what, o.start < o.index1 and "INDEX 00" or "INDEX 01",
          M.msf(o.start), name(i - 1, tracks[i - 1]), M.msf(prev.index1))
      end
      prev.stop = o.start
    end
    o.pregap = o.index1 - o.start
    out.tracks[i] = o
  end
  local last = out.tracks[#out.tracks]
  if last.index1 >= out.frames then
    fail("%s: INDEX 01 at %s is not inside the image of %s (%d frames)",
      name(#tracks, tracks[#tracks]), M.msf(last.index1), M.msf(out.frames), out.frames)
  end
  last.stop = out.frames

  for i, o in ipairs(out.tracks) do
    local audio = o.stop - o.index1
    if audio < M.MIN_TRACK then
      fail("%s: %d frames (%.2f s) from INDEX 01 to its end; the Red Book's "
        .. "minimum is %d frames (4 s)", name(i, tracks[i]), audio, audio / M.FPS,
        M.MIN_TRACK)
    end
  end

  -- CD-TEXT: a field given anywhere must be given for the album and every
  -- track (cdrdao's man page, "CD-TEXT Blocks"); check it once here so that
  -- the CUE sheet and the TOC carry the same text.
  for _, field in ipairs { "title", "performer" } do
    local any = out[field] ~= nil
    for _, o in ipairs(out.tracks) do any = any or o[field] ~= nil end
    if any then
      if out[field] == nil then
        fail("the album has no %s but some tracks have one; CD-TEXT needs the "
          .. "%s of the album and of every track", field, field)
      end
      for i, o in ipairs(out.tracks) do
        if o[field] == nil then
          fail("%s has no %s; CD-TEXT needs the %s of the album and of every track",
            name(i, tracks[i]), field, field)
        end
      end
    end
  end
  return out
end

local function quote(s) return '"' .. s .. '"' end

--- The CUE sheet (CDRWIN format, as cuetools, EAC and most burners read
-- it) for the album: one FILE ... WAVE with the whole image, per track
-- TITLE, PERFORMER, ISRC (unquoted: cuetools takes a quoted ISRC for a
-- CD-TEXT field instead of the track's code), INDEX 00 when it has a gap,
-- and INDEX 01, positions as mm:ss:ff from the image start. Returns the
-- text (lines end in "\n").
function M.cue(album)
  local a = M.layout(album)
  local L = {}
  local function add(fmt, ...) L[#L + 1] = fmt:format(...) end
  if a.catalog then add("CATALOG %s", a.catalog) end
  if a.performer then add("PERFORMER %s", quote(a.performer)) end
  if a.title then add("TITLE %s", quote(a.title)) end
  add("FILE %s WAVE", quote(a.file))
  for _, t in ipairs(a.tracks) do
    add("  TRACK %02d AUDIO", t.number)
    if t.title then add("    TITLE %s", quote(t.title)) end
    if t.performer then add("    PERFORMER %s", quote(t.performer)) end
    if t.isrc then add("    ISRC %s", t.isrc) end
    if t.pregap > 0 then add("    INDEX 00 %s", M.msf(t.start)) end
    add("    INDEX 01 %s", M.msf(t.index1))
  end
  return table.concat(L, "\n") .. "\n"
end

--- The cdrdao TOC file for the album (cdrdao(1), "TOC FILES"): CD_DA, the
-- CATALOG, CD-TEXT (language 0 mapped to 9, English: numeric because
-- cuetools' TOC reader knows no names), and per track its ISRC, CD-TEXT
-- and its section of the one image as `AUDIOFILE "file" start length`,
-- followed by `START pregap` when the track has a gap (the part of the
-- section before START is the pregap, INDEX 00). Returns the text.
function M.toc(album)
  local a = M.layout(album)
  if not a.file:lower():match("%.wav$") then
    -- cdrdao reads a file as WAVE only by its ".wav" ending, as raw
    -- big-endian samples otherwise: that would be full-scale noise.
    fail("file '%s': cdrdao reads only a name ending in .wav as a WAVE file", a.file)
  end
  local cdtext = a.title ~= nil or a.performer ~= nil
  local L = {}
  local function add(fmt, ...) L[#L + 1] = fmt:format(...) end
  local function text_block(indent, o)
    add("%s  LANGUAGE 0 {", indent)
    if o.title then add("%s    TITLE %s", indent, quote(o.title)) end
    if o.performer then add("%s    PERFORMER %s", indent, quote(o.performer)) end
    add("%s  }", indent)
  end
  add("CD_DA")
  if a.catalog then add("CATALOG %s", quote(a.catalog)) end
  if cdtext then
    add("CD_TEXT {")
    add("  LANGUAGE_MAP { 0 : 9 }")
    text_block("", a)
    add("}")
  end
  for _, t in ipairs(a.tracks) do
    add("")
    add("// track %d", t.number)
    add("TRACK AUDIO")
    if t.isrc then add("ISRC %s", quote(t.isrc)) end
    if cdtext then
      add("CD_TEXT {")
      text_block("", t)
      add("}")
    end
    add("AUDIOFILE %s %s %s", quote(a.file), M.msf(t.start), M.msf(t.stop - t.start))
    if t.pregap > 0 then add("START %s", M.msf(t.pregap)) end
  end
  return table.concat(L, "\n") .. "\n"
end

return M
