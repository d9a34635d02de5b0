"""Read one image or mask file with OpenCV and refuse damaged files instead of guessing.

`cv2.imread` quietly returns a half-grey image for a truncated JPEG (libjpeg only prints
"Premature end of JPEG file"), so every file is read as bytes first and its container is checked
for completeness: a JPEG must have its end-of-image marker after its last scan, a PNG its IEND
chunk, a BMP at least the byte count its header declares. Only then is it decoded (from the same
bytes, so each file is read from disk once).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import cv2
import numpy as np


class BadFile(Exception):
    """A file that cannot be used; the message says why, in words a user can act on."""


def truncation_reason(data: bytes) -> Optional[str]:
    """Why `data` looks like a cut-off file, or None. Format found from the magic bytes, not the name."""
    if data[:2] == b"\xff\xd8":  # JPEG: EOI (FFD9) must follow the last start-of-scan (FFDA).
        # Entropy-coded data never contains FF DA or FF D9 (0xFF is byte-stuffed), so a cut file
        # has no EOI after its last SOS; an EXIF thumbnail's EOI lies before the main scan.
        last_sos = data.rfind(b"\xff\xda")
        if last_sos < 0 or data.rfind(b"\xff\xd9") < last_sos:
            return "truncated JPEG (no end-of-image marker after the last scan)"
    elif data[:8] == b"\x89PNG\r\n\x1a\n":
        if data.rfind(b"IEND") < 0:
            return "truncated PNG (no IEND chunk)"
    elif data[:2] == b"BM" and len(data) >= 6:
        declared = int.from_bytes(data[2:6], "little")
        if declared and len(data) < declared:
            return f"truncated BMP ({len(data)} of {declared} bytes)"
    return None


def _read(path: Path, flags: int) -> np.ndarray:
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise BadFile("file not found") from None
    except OSError as exc:
        raise BadFile(f"cannot be read ({exc.strerror or exc})") from None
    if not data:
        raise BadFile("empty file")
    reason = truncation_reason(data)
    if reason:
        raise BadFile(reason)
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if arr is None or arr.size == 0:
        raise BadFile("cannot be decoded (corrupt or not an image)")
    return arr


def read_rgb(path: Path) -> np.ndarray:
    """uint8 (h, w, 3) RGB. Grey images are expanded, alpha dropped, 16-bit scaled to 8-bit."""
    bgr = _read(path, cv2.IMREAD_COLOR)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_mask(path: Path) -> np.ndarray:
    """uint8 (h, w) grey levels on the 0..255 scale (binarise later, at >128).

    Decoded at the file's own bit depth (`IMREAD_ANYDEPTH`: grey, EXIF orientation applied as for
    images), then put on the 8-bit scale by :func:`mask_to_8bit`. `IMREAD_GRAYSCALE` would
    shift a 16-bit mask right by 8 bits, turning a 0/255 mask stored in 16 bits into all zeros.
    """
    return mask_to_8bit(_read(path, cv2.IMREAD_ANYDEPTH))


def mask_to_8bit(mask: np.ndarray) -> np.ndarray:
    """A decoded mask on the 0..255 scale, decided by its values, not its bit depth.

    - 8-bit: as stored.
    - 16-bit: if no value exceeds 255 the file holds 8-bit values (0/255 written into a 16-bit
      PNG) and they are kept; otherwise the values span 0..65535 and are scaled (v / 257, rounded),
      so 0/65535 becomes 0/255.
    - floating point (e.g. TIFF): values within [0, 1] are scaled by 255; values within
      [0, 255] are kept; anything else (negative, NaN, larger) is refused.
    """
    if mask.dtype == np.uint8:
        return mask
    if mask.dtype == np.uint16:
        if int(mask.max(initial=0)) <= 255:
            return mask.astype(np.uint8)
        return np.rint(mask / 257.0).astype(np.uint8)
    if mask.dtype in (np.float32, np.float64):
        lo, hi = float(np.min(mask)), float(np.max(mask))
        if not (np.isfinite(lo) and np.isfinite(hi)) or lo < 0 or hi > 255:
            raise BadFile(f"floating-point mask with values in [{lo:g}, {hi:g}]; expected 0..1 or 0..255")
        return np.rint(mask * (255.0 if hi <= 1.0 else 1.0)).astype(np.uint8)
    raise BadFile(f"unsupported mask sample type {mask.dtype}; expected 8- or 16-bit grey levels")


def write_image(path: Path, rgb: np.ndarray) -> None:
    """Write RGB (or a grey mask) with the encoder implied by the suffix (JPEG: quality 95); raises
    OSError on failure."""
    arr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) if rgb.ndim == 3 else rgb
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if Path(path).suffix.lower() in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(Path(path).suffix, arr, params)
    if not ok:
        raise OSError(f"{path}: OpenCV could not encode the image")
    Path(path).write_bytes(buf.tobytes())
