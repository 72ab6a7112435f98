#!/usr/bin/python3
"""Acceptance: `moonbus demo OUT.wav` (scripts/demo.lua), measured with
ffmpeg and numpy.

The demo synthesises a song (kick, snare, hats, bass, chords, lead), mixes
it as a session (drum and music buses, reverb and echo returns, automation)
and masters it for Spotify. Asserted:
  - exit 0, nothing on stderr (not a terminal), no input files needed;
  - OUT.wav, OUT-mix.wav and OUT-stems/{drums,music,verb,echo}.wav written,
    nothing else; all 24-bit, 48 kHz stereo, of one length (the song plus the
    reverb and echo tails);
  - the master measures -14 +-0.2 LUFS and at most -1 dBTP in ffmpeg's
    ebur128 (peak=true), and the printed integrated loudness agrees with
    ffmpeg within 0.1 LU;
  - the stems sum to the mix (the session's master bus is empty) below
    -120 dBFS;
  - the arrangement is what the script says: the returns ring after the
    song ends (tails), the chords' reverb send opens in the second half
    (the verb return is louder there), and the hats' pan automation moves
    the drums' top end (above 12 kHz) from left (start) to right (middle).
"""
import os
import re
import sys
import time

import numpy as np
import soundfile as sf

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mbtest as T  # noqa: E402

d = T.tmpdir()
t0 = time.time()
rc, out, err = T.run(["demo", "song.wav"], cwd=d)
wall = time.time() - t0
T.check(rc == 0 and err == "", "demo: exit 0, quiet stderr (rc %d, %r)" % (rc, err[:400]))
if rc != 0:
    T.finish()
T.note("demo ran in %.2f s" % wall)

stems = ["drums", "echo", "music", "verb"]
files = sorted(os.listdir(d))
have = sorted(os.listdir(os.path.join(d, "song-stems"))) if os.path.isdir(os.path.join(d, "song-stems")) else []
T.check(files == ["song-mix.wav", "song-stems", "song.wav"] and have == [s + ".wav" for s in stems],
        "demo wrote song.wav, song-mix.wav, song-stems/%s (found %s, stems %s)" % (stems, files, have))

paths = [os.path.join(d, "song.wav"), os.path.join(d, "song-mix.wav")] + \
    [os.path.join(d, "song-stems", s + ".wav") for s in stems]
infos = [sf.info(p) for p in paths if os.path.exists(p)]
T.check(len(infos) == len(paths) and all(i.subtype == "PCM_24" and i.samplerate == 48000 and i.channels == 2
                                         for i in infos)
        and len({i.frames for i in infos}) == 1,
        "master, mix and stems: 24-bit 48 kHz stereo, one length (%s frames)" % sorted({i.frames for i in infos}))
song_s = 8 * 4 * 0.5
T.check(infos and song_s < infos[0].frames / 48000 <= song_s + 4.01,
        "length %.2f s: the 16 s song plus tails (at most 4 s)" % (infos[0].frames / 48000 if infos else 0))

m = T.ffmpeg_r128(os.path.join(d, "song.wav"))
T.check(abs(m["I"] + 14) <= 0.2, "master: ffmpeg integrated %.2f LUFS (-14 +-0.2)" % m["I"])
T.check(m["TP"] <= -1.0 and m["SP"] <= -1.0,
        "master: ffmpeg true peak %.3f dBTP, sample peak %.3f dBFS (at most -1)" % (m["TP"], m["SP"]))
mi = re.search(r"^integrated\s+(-?\d+\.\d+)\s*LUFS", out, re.M)
T.check(mi is not None and abs(float(mi.group(1)) - m["I"]) <= 0.1,
        "demo prints the master's integrated loudness %s vs ffmpeg %.2f (within 0.1 LU)"
        % (mi.group(1) if mi else None, m["I"]))
T.check("true peak" in out and "passes" in out and "stem drums" in out,
        "demo prints the mix report and the mastering report: %r" % out[:300])

mix, fs = T.read(os.path.join(d, "song-mix.wav"))
parts = {s: T.read(os.path.join(d, "song-stems", s + ".wav"))[0] for s in stems}
total = sum(parts.values())
null = T.peak_db(mix - total) if total.shape == mix.shape else 0
T.check(null < -120, "stems sum to the mix: null %.1f dBFS (< -120)" % null)
T.check(all(T.rms_db(x) > -60 for x in parts.values()),
        "every stem carries sound: %s" % {s: round(T.rms_db(x), 1) for s, x in parts.items()})

end = int(song_s * fs)
for s in ("verb", "echo"):
    tail = T.rms_db(parts[s][end + fs // 10:end + fs // 2])
    T.check(tail > -70, "%s return rings on after the song ends: %.1f dBFS RMS at 16.1-16.5 s" % (s, tail))
v = parts["verb"]
# windows with the same players (the lead enters at 4 s; its fader rides
# up at 12 s): only the chords' send differs (-30 dB before 6 s, -6 after 8 s)
first, second = T.rms_db(v[4 * fs:6 * fs]), T.rms_db(v[int(8.5 * fs):12 * fs])
T.check(second - first > 3, "chords' reverb send opens up: verb return %.1f dBFS at 4-6 s, %.1f at 8.5-12 s"
        % (first, second))

from scipy import signal  # noqa: E402
b, a = signal.butter(4, 12000 / (fs / 2), "high")
top = signal.lfilter(b, a, parts["drums"], axis=0)


def balance(t0, t1):
    x = top[int(t0 * fs):int(t1 * fs)]
    return T.rms_db(x[:, 1]) - T.rms_db(x[:, 0])  # right minus left, dB


start, middle = balance(0, 1.5), balance(7.25, 8.75)
T.check(start < -3 and middle > 3,
        "hats' pan automation: drums above 12 kHz R-L %.1f dB at 0-1.5 s, %+.1f dB at 7.25-8.75 s"
        % (start, middle))
T.finish()
