"""The repository carries its own documentation.

Users get this repository and nothing else, so nothing in it may send them to the design files
that live outside it, and every relative link in the Markdown docs (and every
``docs/<page>.md#<anchor>`` citation in code, configs and docs) must resolve.
"""

from __future__ import annotations

import re
import subprocess
import unicodedata
from pathlib import Path
from urllib.parse import unquote

import pytest

REPO = Path(__file__).resolve().parents[1]

#: Pointers to documents outside the repository: the design specification and metric definitions,
#: and the sibling ``shared`` folder they (and the test vectors) live in.
FORBIDDEN = re.compile(r"\bSPEC\b|METRICS\.md|\.\./shared|shared/design|shared/oracle")

#: Paths (relative to the repository root) allowed to match FORBIDDEN, each with its reason.
#: ``tests/`` is excluded as a whole: CI provides ``../shared/oracle`` and the oracle tests read
#: it (they skip with a reason in a user's clone).
ALLOWED: dict[str, str] = {}

#: Markdown pages whose relative links are checked.
LINKED_PAGES = ("README.md", "docs/*.md")

LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_DEFINITION = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$", re.M)
FENCE = re.compile(r"^\s{0,3}(```|~~~)")
INLINE_CODE = re.compile(r"(`+)(.+?)\1")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
DOC_CITATION = re.compile(r"\bdocs/([\w.-]+\.md)#([\w-]+)")


def repository_files() -> list[str]:
    """Tracked files plus new, not ignored ones (so uncommitted docs are checked too)."""
    try:
        result = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
            cwd=REPO,
            capture_output=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError) as error:
        pytest.skip(f"not a git checkout, cannot list the repository's files: {error}")
    names = sorted({name for name in result.stdout.decode().split("\0") if name})
    return [name for name in names if (REPO / name).is_file()]


def text_of(path: Path) -> str | None:
    """The file's text, or ``None`` for binary files."""
    data = path.read_bytes()
    if b"\0" in data:
        return None
    return data.decode("utf-8", errors="replace")


def without_code(markdown: str) -> list[tuple[int, str]]:
    """``(line number, line)`` of a Markdown page outside fenced code, inline code removed."""
    lines, fenced = [], False
    for number, line in enumerate(markdown.splitlines(), start=1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append((number, INLINE_CODE.sub("", line)))
    return lines


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: rendered text, lowercase, punctuation dropped, ' ' → '-'."""
    text = INLINE_CODE.sub(lambda m: m.group(2), heading)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # links render as their text
    text = re.sub(r"(\*+|(?<!\w)_+|_+(?!\w))", "", text)  # emphasis markers
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    kept = "".join(
        ch
        for ch in text
        if ch in "-_ " or unicodedata.category(ch)[0] in "LMN" or unicodedata.category(ch) == "Pc"
    )
    return kept.replace(" ", "-")


def anchors_of(page: Path) -> set[str]:
    """Every heading anchor of a Markdown page, with GitHub's ``-1``, ``-2`` for repeats."""
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    fenced = False
    for line in page.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        match = None if fenced else HEADING.match(line)
        if match is None:
            continue
        anchor = github_anchor(match.group(2))
        count = seen.get(anchor, 0)
        seen[anchor] = count + 1
        anchors.add(anchor if count == 0 else f"{anchor}-{count}")
    return anchors


def markdown_pages() -> list[Path]:
    pages = {path for pattern in LINKED_PAGES for path in REPO.glob(pattern)}
    return sorted(pages)


def test_no_file_points_outside_the_repository():
    offending = []
    for name in repository_files():
        if name.startswith("tests/") or name in ALLOWED:
            continue
        text = text_of(REPO / name)
        if text is None:
            continue
        for number, line in enumerate(text.splitlines(), start=1):
            if FORBIDDEN.search(line):
                offending.append(f"{name}:{number}: {line.strip()}")
    assert not offending, (
        "these lines point to design documents outside the repository (SPEC, METRICS.md, "
        "../shared); cite docs/method.md or docs/metrics.md instead:\n" + "\n".join(offending)
    )


def test_allowed_exceptions_are_still_needed():
    for name, reason in ALLOWED.items():
        assert reason.strip(), f"{name}: every exception needs a reason"
        text = text_of(REPO / name) if (REPO / name).is_file() else None
        assert text is not None and FORBIDDEN.search(text), f"{name} no longer needs its exception"


def test_relative_markdown_links_resolve():
    assert (REPO / "docs" / "method.md").is_file() and (REPO / "docs" / "metrics.md").is_file()
    broken = []
    for page in markdown_pages():
        markdown = page.read_text(encoding="utf-8")
        targets = [
            (number, target)
            for number, line in without_code(markdown)
            for target in LINK.findall(line)
        ]
        targets += [
            (markdown.count("\n", 0, m.start()) + 1, m.group(1))
            for m in REFERENCE_DEFINITION.finditer(markdown)
        ]
        where = page.relative_to(REPO)
        for number, target in targets:
            if SCHEME.match(target):
                continue  # absolute URL
            path_part, _, anchor = target.partition("#")
            destination = (page.parent / unquote(path_part)).resolve() if path_part else page
            if not destination.exists():
                broken.append(f"{where}:{number}: {target} (no such file)")
                continue
            if anchor and destination.suffix == ".md":
                if unquote(anchor) not in anchors_of(destination):
                    broken.append(f"{where}:{number}: {target} (no heading with that anchor)")
    assert not broken, "broken relative links:\n" + "\n".join(broken)


def test_doc_section_citations_resolve():
    """``docs/<page>.md#<anchor>`` cited anywhere (code, configs, docs, tests) names a heading."""
    broken = []
    anchors: dict[str, set[str]] = {}
    for name in repository_files():
        text = text_of(REPO / name)
        if text is None:
            continue
        for number, line in enumerate(text.splitlines(), start=1):
            for page_name, anchor in DOC_CITATION.findall(line):
                page = REPO / "docs" / page_name
                if not page.is_file():
                    broken.append(f"{name}:{number}: docs/{page_name} does not exist")
                    continue
                if page_name not in anchors:
                    anchors[page_name] = anchors_of(page)
                if anchor not in anchors[page_name]:
                    broken.append(f"{name}:{number}: docs/{page_name}#{anchor} names no heading")
    assert not broken, "citations of missing doc sections:\n" + "\n".join(broken)


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        ("Precision", "precision"),
        ("Insertion and deletion", "insertion-and-deletion"),
        (
            "The map grid: `model.backbone_kwargs.output_stride`",
            "the-map-grid-modelbackbone_kwargsoutput_stride",
        ),
        ("Explanation cost (`bench/explain_cost.py`)", "explanation-cost-benchexplain_costpy"),
        ("FC vs SCOUTER over λ on offline data", "fc-vs-scouter-over-λ-on-offline-data"),
        ("Results: the shipped recipes (3 seeds)", "results-the-shipped-recipes-3-seeds"),
        ("A — b", "a--b"),
    ],
)
def test_github_anchor_rules(heading, anchor):
    assert github_anchor(heading) == anchor
