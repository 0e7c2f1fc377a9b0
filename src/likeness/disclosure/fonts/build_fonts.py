"""How the label fonts in this folder were made (run by hand; not imported at run time).

    apt-get download fonts-dejavu-core fonts-noto-cjk   # Debian packages
    dpkg -x <each .deb> x/
    pip install fonttools
    python build_fonts.py x/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf \\
        x/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc

Both are subsets holding only the glyphs the label can print (see ``likeness.disclosure.label``):
DejaVu Sans Bold (Bitstream Vera / DejaVu licence, LICENSE-DejaVu.txt) for Latin text and ids, and
Noto Sans CJK SC Bold (SIL Open Font License 1.1, LICENSE-NotoSansCJK.txt) for Chinese, Japanese and
Korean label text.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
LATIN = (
    "".join(chr(c) for c in range(0x20, 0x7F))
    + "ÀÁÂÃÄÅÆÇÈÉÊËÌÍÎÏÐÑÒÓÔÕÖØÙÚÛÜÝÞßÄÖÜÑ·–—’"
    + "".join(chr(c) for c in range(0x100, 0x180))
)
CJK = "AI生成人工智能内容合成이생성된콘텐츠 -"


def subset(source: str, out: Path, text: str, font_number: int = 0) -> None:
    from fontTools import subset as ft_subset

    options = ft_subset.Options()
    options.font_number = font_number
    options.name_IDs = ["*"]  # keep the copyright and licence names
    options.notdef_outline = True
    font = ft_subset.load_font(source, options)
    subsetter = ft_subset.Subsetter(options)
    subsetter.populate(text=text)
    subsetter.subset(font)
    ft_subset.save_font(font, str(out), options)


if __name__ == "__main__":
    dejavu, noto = sys.argv[1], sys.argv[2]
    subset(dejavu, HERE / "LikenessLabel-Latin.ttf", LATIN)
    subset(noto, HERE / "LikenessLabel-CJK.otf", CJK, font_number=2)  # 2 = Noto Sans CJK SC Bold
