"""The implicit label of GB 45438-2025: the ``AIGC`` JSON in a file's metadata.

The standard's implicit label is a JSON object ``{Label, ContentProducer, ProduceID, ReservedCode1,
ContentPropagator, PropagateID, ReservedCode2}`` in the file's metadata. For files that carry XMP it
is the property ``TC260:AIGC`` in the namespace ``http://www.tc260.org.cn/ns/AIGC/1.0/`` (the
TC260 practice guide TC260-PG-20258A; the form Chinese services write and readers look for, e.g.
github.com/OPN48/cnTC260). Where it goes, by format (:func:`embed_aigc`; bytes inserted, pixels
untouched):

* JPEG: an XMP packet in an APP1 segment right after the start of the file (and its JFIF APP0);
* PNG: an XMP packet in an ``iTXt`` chunk ``XML:com.adobe.xmp`` before the image data;
* MP4 / MOV: an XMP packet in a top-level ``uuid`` box (the XMP box, ISO 16684-1 / Adobe XMP Part 3),
  appended at the end of the file, so no sample offset moves.

What likeness puts in it (:func:`aigc_fields`):

* ``Label`` "1": the content *is* AI-generated or synthesised (the standard's values: 1 is, 2 may be,
  3 is suspected to be);
* ``ContentProducer``: the producer's name or code, from the policy's ``[disclosure]
  content_producer`` (a service registered in China puts its filing code there);
* ``ProduceID``: the output id, the same id the watermark, the manifest and the ledger carry;
* ``ReservedCode1``: the producer's integrity field: ``phash:`` and the 64-bit perceptual hash of the
  sealed picture (footage: its first frame), binding the label to the picture it was written for;
* ``ContentPropagator``, ``PropagateID``, ``ReservedCode2``: empty; a platform that spreads the file
  fills them in.

The same JSON is stated in the C2PA manifest (``org.likeness.aigc``), signed, after it was written
here; ``likeness verify`` compares the two.
"""

from __future__ import annotations

import html
import json
import os
import re
import struct
import zlib
from collections.abc import Mapping
from pathlib import Path

from likeness.errors import DisclosureError
from likeness.fsutil import write_atomic

TC260_NS = "http://www.tc260.org.cn/ns/AIGC/1.0/"
FIELDS = (
    "Label",
    "ContentProducer",
    "ProduceID",
    "ReservedCode1",
    "ContentPropagator",
    "PropagateID",
    "ReservedCode2",
)
LABEL_AI_GENERATED = "1"
"""GB 45438-2025: Label 1 = is AI-generated/synthesised content (2 = may be, 3 = suspected)."""
XMP_JPEG_HEADER = b"http://ns.adobe.com/xap/1.0/\x00"
XMP_PNG_KEYWORD = b"XML:com.adobe.xmp"
XMP_UUID = bytes.fromhex("BE7ACFCB97A942E89C71999491E3AFAC")
_AIGC_ELEMENT = re.compile(rb"<TC260:AIGC>(.*?)</TC260:AIGC>", re.S)


def aigc_fields(output_id: str, producer: str, phash: str) -> dict[str, str]:
    """The AIGC JSON likeness writes for one output (see the module docstring)."""
    return {
        "Label": LABEL_AI_GENERATED,
        "ContentProducer": producer,
        "ProduceID": output_id,
        "ReservedCode1": f"phash:{phash}" if phash else "",
        "ContentPropagator": "",
        "PropagateID": "",
        "ReservedCode2": "",
    }


def aigc_json(fields: Mapping[str, str]) -> str:
    """The JSON text, fields in the standard's order, no spaces."""
    return json.dumps({k: str(fields.get(k, "")) for k in FIELDS}, ensure_ascii=False, separators=(",", ":"))


def xmp_packet(fields: Mapping[str, str]) -> bytes:
    """An XMP packet holding ``TC260:AIGC``."""
    value = html.escape(aigc_json(fields), quote=True)
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">'
        '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        f'<rdf:Description rdf:about="" xmlns:TC260="{TC260_NS}">'
        f"<TC260:AIGC>{value}</TC260:AIGC>"
        "</rdf:Description></rdf:RDF></x:xmpmeta>"
        '<?xpacket end="w"?>'
    ).encode()


def parse_aigc(xmp: bytes | str) -> dict[str, str] | None:
    """The AIGC JSON in an XMP packet, or ``None`` (no such property, or not a JSON object)."""
    data = xmp.encode("utf-8") if isinstance(xmp, str) else xmp
    found = _AIGC_ELEMENT.search(data)
    if found is None:
        return None
    try:
        value = json.loads(html.unescape(found.group(1).decode("utf-8")))
    except (UnicodeDecodeError, ValueError):
        return None
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else None


# -- writing ----------------------------------------------------------------------------------------
def _jpeg_with(data: bytes, packet: bytes) -> bytes:
    if not data.startswith(b"\xff\xd8"):
        raise DisclosureError("the encoded output is not a JPEG file; the AIGC metadata cannot be written")
    payload = XMP_JPEG_HEADER + packet
    if len(payload) + 2 > 0xFFFF:
        raise DisclosureError("the AIGC metadata is too large for one JPEG segment")
    at = 2
    if data[2:4] == b"\xff\xe0":  # keep JFIF's APP0 first
        at = 4 + struct.unpack(">H", data[4:6])[0]
    segment = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    return data[:at] + segment + data[at:]


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return (
        struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    )


def _png_with(data: bytes, packet: bytes) -> bytes:
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise DisclosureError("the encoded output is not a PNG file; the AIGC metadata cannot be written")
    at = 8
    while at + 8 <= len(data) and data[at + 4 : at + 8] != b"IDAT":  # walk the chunks to the first IDAT
        at += 12 + struct.unpack(">I", data[at : at + 4])[0]
    if at + 8 > len(data):
        raise DisclosureError("the encoded PNG has no image data")
    # iTXt: keyword, NUL, compression flag 0, method 0, empty language tag, NUL, empty translation, NUL
    body = XMP_PNG_KEYWORD + b"\x00\x00\x00" + b"\x00" + b"\x00" + packet
    return data[:at] + _png_chunk(b"iTXt", body) + data[at:]


def embed_aigc(path: Path, media_type: str, fields: Mapping[str, str]) -> None:
    """Write the AIGC implicit label into the finished file ``path`` (before it is signed)."""
    path = Path(path)
    packet = xmp_packet(fields)
    if media_type == "image/jpeg":
        write_atomic(path, _jpeg_with(path.read_bytes(), packet), mode=path.stat().st_mode & 0o777)
    elif media_type == "image/png":
        write_atomic(path, _png_with(path.read_bytes(), packet), mode=path.stat().st_mode & 0o777)
    elif media_type in ("video/mp4", "video/quicktime"):
        box = struct.pack(">I", 8 + 16 + len(packet)) + b"uuid" + XMP_UUID + packet
        with path.open("ab") as handle:
            handle.write(box)
            handle.flush()
            os.fsync(handle.fileno())
    else:
        raise DisclosureError(f"{path}: the AIGC metadata cannot be written into {media_type}")


# -- reading ----------------------------------------------------------------------------------------
def _jpeg_xmp(data: bytes) -> list[bytes]:
    found, at = [], 2
    while at + 4 <= len(data) and data[at] == 0xFF:
        marker = data[at + 1]
        if marker in (0xD9, 0xDA):  # end of image, start of scan: no more metadata segments
            break
        size = struct.unpack(">H", data[at + 2 : at + 4])[0]
        body = data[at + 4 : at + 2 + size]
        if marker == 0xE1 and body.startswith(XMP_JPEG_HEADER):
            found.append(body[len(XMP_JPEG_HEADER) :])
        at += 2 + size
    return found


def _png_xmp(data: bytes) -> list[bytes]:
    found, at = [], 8
    while at + 8 <= len(data):
        size, kind = struct.unpack(">I", data[at : at + 4])[0], data[at + 4 : at + 8]
        body = data[at + 8 : at + 8 + size]
        if kind in (b"iTXt", b"tEXt") and body.startswith(XMP_PNG_KEYWORD + b"\x00"):
            rest = body[len(XMP_PNG_KEYWORD) + 1 :]
            if kind == b"iTXt":
                compressed = rest[:1] == b"\x01"
                rest = rest[2:].split(b"\x00", 2)[-1]  # skip language tag and translated keyword
                found.append(zlib.decompress(rest) if compressed else rest)
            else:
                found.append(rest)
        if kind == b"IEND":
            break
        at += 12 + size
    return found


def _bmff_xmp(path: Path) -> list[bytes]:
    """XMP packets in the top-level ``uuid`` boxes of an MP4 / MOV file."""
    found = []
    with path.open("rb") as handle:
        end = path.stat().st_size
        at = 0
        while at + 8 <= end:
            handle.seek(at)
            size, kind = struct.unpack(">I4s", handle.read(8))
            header = 8
            if size == 1:
                size, header = struct.unpack(">Q", handle.read(8))[0], 16
            elif size == 0:
                size = end - at
            if size < header:
                break
            if kind == b"uuid" and handle.read(16) == XMP_UUID and size - header - 16 < 1 << 24:
                found.append(handle.read(size - header - 16))
            at += size
    return found


def read_aigc(path: Path) -> dict[str, str] | None:
    """The AIGC JSON a file's metadata carries (JPEG, PNG, MP4 / MOV), or ``None``."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            head = handle.read(12)
        if head.startswith(b"\xff\xd8"):
            packets = _jpeg_xmp(path.read_bytes())
        elif head.startswith(b"\x89PNG"):
            packets = _png_xmp(path.read_bytes())
        elif head[4:8] == b"ftyp":
            packets = _bmff_xmp(path)
        else:
            return None
    except (OSError, struct.error, zlib.error):
        return None
    for packet in packets:
        fields = parse_aigc(packet)
        if fields is not None:
            return fields
    return None
