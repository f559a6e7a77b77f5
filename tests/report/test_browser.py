"""The report in a real browser: headless Chromium (Debian package ``chromium``) lays the SVG out and
paints it. `invoke setup --all` (the README's test command) installs it: without it these tests fail."""

from __future__ import annotations

import itertools
import json
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

from analysis.report import write_report
from tests.report._data import RUN_6_1, verdict

CHROMIUM = next((found for name in ("chromium", "chromium-browser", "google-chrome")
                 if (found := shutil.which(name))), None)

# Appended by the test only (the report itself has no script): every region rect's box, in DOM order.
PROBE = """<pre id="probe"></pre><script>
const boxes = [...document.querySelectorAll('rect.region')].map(r => {
  const b = r.getBoundingClientRect();
  return {name: r.dataset.name, start: Number(r.dataset.start), top: b.top, height: b.height, width: b.width};
});
const areas = [...document.querySelectorAll('g.area')].filter(g => g.getBoundingClientRect().width > 0).length;
document.getElementById('probe').textContent = JSON.stringify({boxes, areas});
</script></body>"""


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None, "no chromium binary: run `invoke setup --all` (apt-get install chromium)"
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               f"--user-data-dir={tmp_path / 'profile'}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def test_regions_are_laid_out_in_address_order(tmp_path: Path) -> None:
    report = tmp_path / "report.html"
    write_report(verdict(RUN_6_1), report)
    probed = tmp_path / "probed.html"
    probed.write_text(report.read_text(encoding="utf-8").replace("</body>", PROBE), encoding="utf-8")
    done = _chromium(tmp_path, "--dump-dom", probed.as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    found = done.stdout.split('<pre id="probe">', 1)[1].split("</pre>", 1)[0]
    result = json.loads(found.replace("&amp;", "&"))
    boxes = result["boxes"]
    assert [b["name"] for b in boxes] == ["modules", "pkmap", "lowmem", "vmalloc", "fixmap", "vectors"]
    assert [b["start"] for b in boxes] == sorted(b["start"] for b in boxes)
    assert all(b["height"] >= 20 and b["width"] > 500 for b in boxes)
    assert all(a["top"] + a["height"] <= b["top"] for a, b in itertools.pairwise(boxes))
    height = {b["name"]: b["height"] for b in boxes}
    assert height["vectors"] < height["pkmap"] < height["vmalloc"] < height["lowmem"]
    assert result["areas"] == 98


def _png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and the unfiltered RGB(A) rows of an 8-bit PNG (RFC 2083 filters 0-4)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        header = body if kind == b"IHDR" else header
        idat += body if kind == b"IDAT" else b""
        pos += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and colour in (2, 6), (depth, colour)
    bpp = 3 if colour == 2 else 4
    raw, stride, rows, previous = zlib.decompress(idat), width * bpp, [], bytes(width * bpp)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - bpp] if i >= bpp else 0
            up, corner = previous[i], previous[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 0xFF
        previous = bytes(line)
        rows.append(previous if bpp == 3 else bytes(b for j, b in enumerate(previous) if j % 4 != 3))
    return width, height, rows


def test_screenshot_is_painted_with_the_maps_colours(tmp_path: Path) -> None:
    report = tmp_path / "report.html"
    write_report(verdict(RUN_6_1), report)
    shot = tmp_path / "shot.png"
    done = _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1200,1400", report.as_uri())
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    width, height, rows = _png_pixels(shot.read_bytes())
    assert (width, height) == (1200, 1400)
    pixels = [row[i:i + 3] for row in rows for i in range(0, len(row), 3)]
    white = pixels.count(b"\xff\xff\xff")
    assert white < 0.9 * len(pixels)                      # not a blank page
    assert len(set(pixels)) > 50
    assert b"\xf2\x8e\x2b" in set(pixels)                 # #f28e2b: pci_reserve_io's 2 MiB in the vmalloc band
    assert b"\xe4\xeb\xf3" in set(pixels)                 # #e4ebf3: the bands' raster
