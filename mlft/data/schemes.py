"""Label schemes IOB1, IOB2, IOBES and BMES, converted to IOB2 (the scheme used for training and scoring).

Spans are the common ground: each scheme is parsed into (start, end, type) spans, checking every
transition, then written out as IOB2. Invalid transitions are reported, or repaired when asked
(an illegal continuation then starts a new entity, as conlleval does).
"""

from __future__ import annotations

from dataclasses import dataclass

SCHEMES = ("IOB1", "IOB2", "IOBES", "BMES")
ALIASES = {"BIO": "IOB2", "BIOES": "IOBES", "BILOU": "IOBES"}
"""Other names of the schemes (BILOU's L and U are read as E and S)."""

# Prefixes each scheme uses for begin / inside / end / single.
_PREFIXES = {
    "IOB1": {"B", "I"},
    "IOB2": {"B", "I"},
    "IOBES": {"B", "I", "E", "S"},
    "BMES": {"B", "M", "E", "S"},
}


@dataclass(frozen=True)
class TagProblem:
    index: int
    message: str
    repairable: bool = True
    """An invalid transition (data.repair=true fixes it), not an invalid tag name (which it cannot)."""


def split_tag(tag: str) -> tuple[str, str]:
    """Splits 'B-PER' into ('B', 'PER'); 'O' into ('O', '')."""
    if tag == "O":
        return "O", ""
    prefix, sep, etype = tag.partition("-")
    if not sep or not etype:
        return "?", tag
    return prefix, etype


def to_spans(
    tags: list[str], scheme: str, repair: bool = False
) -> tuple[list[tuple[int, int, str]], list[TagProblem]]:
    """Parses tags into [start, end) typed spans, returning problems found on the way."""
    if scheme == "BILOU":
        tags = [{"L": "E", "U": "S"}.get(split_tag(t)[0], split_tag(t)[0]) + t[1:] if t != "O" else t for t in tags]
    scheme = ALIASES.get(scheme, scheme)
    allowed = _PREFIXES[scheme]
    spans: list[tuple[int, int, str]] = []
    problems: list[TagProblem] = []
    open_start, open_type = -1, ""

    def close(end: int) -> None:
        nonlocal open_start, open_type
        if open_start >= 0:
            spans.append((open_start, end, open_type))
        open_start, open_type = -1, ""

    for i, tag in enumerate(tags):
        prefix, etype = split_tag(tag)
        if prefix != "O" and prefix not in allowed:
            problems.append(
                TagProblem(i, f"tag {tag!r} is not a {scheme} tag (prefixes: O, {', '.join(sorted(allowed))})", False)
            )
            close(i)
            continue
        if prefix == "O":
            if scheme in ("IOBES", "BMES") and open_start >= 0:
                problems.append(
                    TagProblem(i, f"entity {open_type} opened at token {open_start + 1} is not closed by E-")
                )
            close(i)
        elif prefix == "S":
            if open_start >= 0 and scheme in ("IOBES", "BMES"):
                problems.append(TagProblem(i, f"S-{etype} inside an open entity {open_type}"))
            close(i)
            spans.append((i, i + 1, etype))
        elif prefix == "B":
            if open_start >= 0 and scheme in ("IOBES", "BMES"):
                problems.append(TagProblem(i, f"B-{etype} while entity {open_type} is still open"))
            if scheme == "IOB1" and not (open_start >= 0 and open_type == etype):
                problems.append(TagProblem(i, f"IOB1 uses B-{etype} only right after another {etype} entity"))
            close(i)
            open_start, open_type = i, etype
        else:  # inside or end
            continues = open_start >= 0 and open_type == etype
            if not continues:
                if scheme != "IOB1":
                    problems.append(TagProblem(i, f"{tag!r} does not continue an entity (previous tag ends it)"))
                close(i)
                open_start, open_type = i, etype
            if prefix == "E":
                close(i + 1)
    if open_start >= 0 and scheme in ("IOBES", "BMES"):
        problems.append(
            TagProblem(len(tags) - 1, f"entity {open_type} is not closed by E- at the end of the sentence")
        )
    close(len(tags))
    if repair:
        problems = [p for p in problems if not p.repairable]
    return spans, problems


def guess_scheme(tags: list[str]) -> str | None:
    """The scheme whose prefixes are the ones `tags` use, when exactly one has them all (M: BMES; E or S without M:
    IOBES); None otherwise."""
    used = {split_tag(t)[0] for t in tags} - {"O"}
    fitting = [name for name in ("IOB2", "IOBES", "BMES") if used and used <= _PREFIXES[name]]
    return fitting[0] if len(fitting) == 1 else None


def spans_to_iob2(spans: list[tuple[int, int, str]], length: int) -> list[str]:
    tags = ["O"] * length
    for start, end, etype in spans:
        tags[start] = f"B-{etype}"
        for i in range(start + 1, end):
            tags[i] = f"I-{etype}"
    return tags


def to_iob2(tags: list[str], scheme: str, repair: bool = False) -> tuple[list[str], list[TagProblem]]:
    """Converts tags of `scheme` to IOB2; returns the tags and the transition problems."""
    spans, problems = to_spans(tags, scheme, repair=repair)
    return spans_to_iob2(spans, len(tags)), problems


def iob2_entity_types(labels: list[str]) -> list[str]:
    return sorted({split_tag(t)[1] for t in labels if t != "O"})


def iob2_labels(entity_types: list[str]) -> list[str]:
    """The full IOB2 label list for entity types: O first, then B-/I- per type."""
    return ["O"] + [f"{p}-{t}" for t in sorted(entity_types) for p in ("B", "I")]
