"""Wrap the long lines `ruff format` leaves: string literals, docstrings and comments past the line length.

`ruff format` never splits a string or a comment, so after it these are what
E501 still reports. This splits each such string literal into implicitly
concatenated parts at spaces (the text is unchanged; a following `ruff format`
lays the parts out one per line), rewraps docstring and comment lines, and
leaves everything else (a long line it cannot wrap safely) for a person:

    uv run ruff format . && uv run python .ci/wrap_long_lines.py && uv run ruff format .

Only docstrings and stand-alone comments are rewrapped as text; other strings
keep their exact value.
"""

from __future__ import annotations

import io
import re
import subprocess
import sys
import textwrap
import token
import tokenize
from pathlib import Path

LIMIT = 120
_PREFIX = re.compile(r"^([rRbBfFuU]{0,2})('''|\"\"\"|'|\")")


def _long_lines(paths: list[str]) -> dict[Path, set[int]]:
    out = subprocess.run(
        ["ruff", "check", "--select", "E501", "--output-format", "concise", *paths],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    found: dict[Path, set[int]] = {}
    for line in out.splitlines():
        m = re.match(r"^(.+?):(\d+):\d+: E501", line)
        if m:
            found.setdefault(Path(m.group(1)), set()).add(int(m.group(2)))
    return found


def _split_points(body: str, is_f: bool) -> list[int]:
    """Indices just after a space where the literal may be cut (outside f-string braces)."""
    points, depth, i = [], 0, 0
    while i < len(body):
        ch = body[i]
        if is_f and body.startswith(("{{", "}}"), i):
            i += 2
            continue
        if is_f and ch == "{":
            depth += 1
        elif is_f and ch == "}":
            depth -= 1
        elif ch == "\\":
            i += 2
            continue
        elif ch == " " and depth == 0 and 0 < i < len(body) - 1:
            points.append(i + 1)
        i += 1
    return points


def _split_literal(text: str, width: int) -> str | None:
    """``text`` (one single-line literal) as implicitly concatenated parts of at most ``width`` characters."""
    m = _PREFIX.match(text)
    if not m or len(m.group(2)) == 3:
        return None
    prefix, quote = m.group(1), m.group(2)
    if "b" in prefix.lower():
        return None
    body = text[len(prefix) + 1 : -1]
    is_f = "f" in prefix.lower()
    points = _split_points(body, is_f)
    parts, start = [], 0
    budget = max(width - len(prefix) - 2, 30)
    while len(body) - start > budget:
        fitting = [p for p in points if start < p <= start + budget]
        if not fitting:
            break
        parts.append(body[start : fitting[-1]])
        start = fitting[-1]
    parts.append(body[start:])
    if len(parts) == 1:
        return None

    def literal(part: str) -> str:
        keep = prefix
        if is_f and "{" not in part and "}" not in part:
            keep = prefix.replace("f", "").replace("F", "")
        return f"{keep}{quote}{part}{quote}"

    return " ".join(literal(p) for p in parts)


def _fix(path: Path, lines_to_fix: set[int]) -> int:
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines(keepends=True)
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    edits: list[tuple[int, int, int, str]] = []  # (row, col_start, col_end, replacement), single-line only
    rewrap: dict[int, str] = {}  # row -> replacement text of whole lines
    depth = 0
    for idx, tok in enumerate(tokens):
        if tok.type == token.OP and tok.string in "([{":
            depth += 1
        elif tok.type == token.OP and tok.string in ")]}":
            depth -= 1
        rows = range(tok.start[0], tok.end[0] + 1)
        if not lines_to_fix.intersection(rows):
            continue
        if tok.type == tokenize.COMMENT and lines[tok.start[0] - 1].strip().startswith("#"):
            indent = tok.start[1]
            text = tok.string.lstrip("#").strip()
            if text.startswith(("noqa", "type:", "fmt:", "pragma")):
                continue
            wrapped = textwrap.wrap(text, LIMIT - indent - 2, break_on_hyphens=False)
            rewrap[tok.start[0]] = "".join(" " * indent + "# " + w + "\n" for w in wrapped)
        elif tok.type == token.STRING and tok.start[0] == tok.end[0] and tok.start[0] in lines_to_fix:
            prev = tokens[idx - 1].type if idx else None
            nxt = tokens[idx + 1].type if idx + 1 < len(tokens) else None
            if prev in (None, token.INDENT, token.NEWLINE, tokenize.NL, token.DEDENT) and nxt == token.NEWLINE:
                if tok.string.startswith(('"""', "'''")):  # a one-line docstring: make it a wrapped block
                    q, pad = tok.string[:3], " " * tok.start[1]
                    text = tok.string[3:-3]
                    # at least two lines: `ruff format` joins a one-line docstring whose quotes close below it
                    width = min(LIMIT - len(pad) - 3, len(text) - 10)
                    wrapped = textwrap.wrap(text, width, break_on_hyphens=False)
                    rest = "".join(pad + w + "\n" for w in wrapped[1:])
                    rewrap[tok.start[0]] = f"{pad}{q}{wrapped[0]}\n{rest}{pad}{q}\n"
                    continue
            if len(tok.string) < 40:
                continue
            width = LIMIT - tok.start[1] - 8
            split = _split_literal(tok.string, width)
            if split is None:
                continue
            if depth == 0:
                split = f"({split})"
            edits.append((tok.start[0], tok.start[1], tok.end[1], split))
        elif tok.type == token.STRING and tok.start[0] != tok.end[0] and tok.string.startswith(('"""', "'''")):
            prev = tokens[idx - 1].type if idx else None
            if prev not in (None, token.INDENT, token.NEWLINE, tokenize.NL, token.DEDENT):
                continue  # not a docstring: its text is a value
            for row in range(tok.start[0], tok.end[0] + 1):
                if row in lines_to_fix and row != tok.end[0]:
                    line = lines[row - 1]
                    indent = len(line) - len(line.lstrip(" "))
                    opening = tok.string[:3] if row == tok.start[0] else ""
                    text = line.strip()[len(opening) :]
                    wrapped = textwrap.wrap(text, LIMIT - indent - len(opening), break_on_hyphens=False)
                    wrapped[0] = opening + wrapped[0]
                    rewrap[row] = "".join(" " * indent + w + "\n" for w in wrapped)
    if not edits and not rewrap:
        return 0
    for row, start, end, new in sorted(edits, reverse=True):
        line = lines[row - 1]
        lines[row - 1] = line[:start] + new + line[end:]
    for row, text in rewrap.items():
        lines[row - 1] = text
    path.write_text("".join(lines), encoding="utf-8")
    return len(edits) + len(rewrap)


def main(argv: list[str]) -> int:
    paths = argv or ["."]
    total = 0
    for path, rows in sorted(_long_lines(paths).items()):
        if path.suffix == ".py":
            total += _fix(path, rows)
    print(f"wrapped {total} long line(s); run `ruff format` next")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
