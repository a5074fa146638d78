#!/usr/bin/env python3
"""Check docs/conformance.md against the requirements checklist and the test sources.

- Every checklist ID of requirements.md section 2 (REQ-1, JWT-10, ...) and every interop vector
  ID of section 4 (J1, B1, R1, C1, Q1, ...) must have a row in docs/conformance.md.
- Every test a row names (`module::tests::name` or `tests/integration/file.py::name`) must exist,
  and its name, Rust doc comment (///) or Python docstring must cite the row's ID. Rows for the
  section 4 groups without IDs (labels like `4.1-valid`) must cite the section (`4.1`).
- A row marked `tested` must name at least one test.

Usage: tools/check_conformance.py [--requirements PATH] [--cited]
  --cited  print, for each ID, the tests that cite it (a help for writing the table).
Python 3 standard library only. Exit status 1 on any problem.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "conformance.md"
STATUSES = ("tested", "decision", "not implemented (ignored safely)")
CHECKLIST_ID = re.compile(r"^(REQ|CID|JWT|AUD|TIME|ID|X509|BUN|BEP|ISS|ERR|CIMD|WIT|META|EDGE)-\d+$")
VECTOR_ID = re.compile(r"^[A-Z]\d+$")
SECTION_LABEL = re.compile(r"^(4\.\d)(-[a-z0-9-]+)?$")
RUST_TEST = re.compile(r"^[a-z_][a-z0-9_]*(::[a-z_][a-z0-9_]*)+$")
PY_TEST = re.compile(r"^(tests/integration/[A-Za-z0-9_]+\.py)::([A-Za-z_][A-Za-z0-9_]*)$")


def table_rows(lines: list[str]) -> list[list[str]]:
    rows = []
    for line in lines:
        if line.startswith("|") and not re.match(r"^\|\s*-", line):
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


def spec_ids(path: Path) -> tuple[list[str], list[str]]:
    """(checklist IDs of section 2, vector IDs of section 4), in document order."""
    checklist, vectors, section = [], [], None
    lines = path.read_text(encoding="utf-8").splitlines()
    for line in lines:
        m = re.match(r"^## (\d+)\.", line)
        if m:
            section = m.group(1)
            continue
        if not line.startswith("|"):
            continue
        first = line.strip().strip("|").split("|")[0].strip()
        if section == "2" and CHECKLIST_ID.match(first):
            checklist.append(first)
        elif section == "4" and VECTOR_ID.match(first):
            vectors.append(first)
    return checklist, vectors


def cites(label: str, name: str, doc: str) -> bool:
    """True if a test's name or doc text cites the label."""
    m = SECTION_LABEL.match(label)
    if m:
        sec = re.escape(m.group(1))
        return re.search(rf"(?<![\d.]){sec}(?![\d])", doc) is not None
    text_re = rf"(?<![A-Za-z0-9-]){re.escape(label)}(?![0-9])"
    name_re = rf"(^|_){re.escape(label.lower().replace('-', '_'))}(?![0-9])"
    return re.search(text_re, doc) is not None or re.search(name_re, name) is not None


def rust_candidates(parts: list[str]) -> list[Path]:
    """Files that can hold `a::b::tests::name` (module path without the test name)."""
    mods = parts[:-1]
    out = []
    # src/a/b.rs (inline `mod tests`), src/a/b/tests.rs, src/a/b/mod.rs
    for cut in range(len(mods), 0, -1):
        base = ROOT / "src" / Path(*mods[:cut])
        out += [base.with_suffix(".rs"), base / "mod.rs"]
    return [p for p in out if p.is_file()]


def rust_doc(path: Path, name: str) -> str | None:
    lines = path.read_text(encoding="utf-8").splitlines()
    pat = re.compile(rf"^\s*(pub(\([^)]*\))?\s+)?fn {re.escape(name)}\s*[<(]")
    for i, line in enumerate(lines):
        if pat.match(line):
            doc, j = [], i - 1
            while j >= 0 and re.match(r"^\s*(///|#\[)", lines[j]):
                if lines[j].lstrip().startswith("///"):
                    doc.append(lines[j].lstrip()[3:])
                j -= 1
            return "\n".join(reversed(doc))
    return None


def python_doc(path: Path, name: str) -> str | None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
            return ast.get_docstring(node) or ""
    return None


def find_test(ref: str) -> tuple[str, str | None, str]:
    """(test name, doc text or None when it does not exist, where it was looked for)."""
    m = PY_TEST.match(ref)
    if m:
        path = ROOT / m.group(1)
        doc = python_doc(path, m.group(2)) if path.is_file() else None
        return m.group(2), doc, m.group(1)
    parts = ref.split("::")
    files = rust_candidates(parts)
    for path in files:
        doc = rust_doc(path, parts[-1])
        if doc is not None:
            return parts[-1], doc, str(path.relative_to(ROOT))
    return parts[-1], None, ", ".join(str(p.relative_to(ROOT)) for p in files) or "no such module"


def all_tests() -> list[tuple[str, str, str]]:
    """(reference, name, doc) for every Rust #[test] fn and every integration test."""
    out = []
    for path in sorted((ROOT / "src").rglob("*.rs")):
        rel = path.relative_to(ROOT / "src").with_suffix("")
        mods = [p for p in rel.parts if p != "mod"]
        if mods[-1] != "tests":
            mods.append("tests")
        text = path.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(text):
            m = re.match(r"^\s*fn ([a-z0-9_]+)\s*\(", line)
            if m and i > 0 and any("#[test]" in t for t in text[max(0, i - 8):i]):
                out.append(("::".join(mods + [m.group(1)]), m.group(1),
                            rust_doc(path, m.group(1)) or ""))
    for path in sorted((ROOT / "tests" / "integration").glob("test_*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                rel = path.relative_to(ROOT)
                out.append((f"{rel}::{node.name}", node.name, ast.get_docstring(node) or ""))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requirements", type=Path,
                    default=ROOT.parent / "shared" / "spec" / "requirements.md")
    ap.add_argument("--cited", action="store_true")
    args = ap.parse_args()
    checklist, vectors = spec_ids(args.requirements)
    if not checklist or not vectors:
        print(f"no IDs found in {args.requirements}")
        return 1
    if args.cited:
        tests = all_tests()
        for label in checklist + vectors:
            hits = [ref for ref, name, doc in tests if cites(label, name, doc)]
            print(f"{label}: {' '.join(hits) if hits else '-'}")
        return 0

    problems = []
    rows = {}
    for row in table_rows(DOC.read_text(encoding="utf-8").splitlines()):
        label = row[0].strip("` ")
        if not (CHECKLIST_ID.match(label) or VECTOR_ID.match(label) or SECTION_LABEL.match(label)):
            continue
        if label in rows:
            problems.append(f"{label}: more than one row")
        rows[label] = row
    for label in checklist + vectors:
        if label not in rows:
            problems.append(f"{label}: no row in docs/conformance.md")
    for label in rows:
        if (CHECKLIST_ID.match(label) and label not in checklist) or \
                (VECTOR_ID.match(label) and label not in vectors):
            problems.append(f"{label}: row for an ID that requirements.md does not have")

    for label, row in rows.items():
        if CHECKLIST_ID.match(label):
            if len(row) != 4:
                problems.append(f"{label}: expected 4 columns, found {len(row)}")
                continue
            status, refs_cell = row[2], row[3]
            if status not in STATUSES:
                problems.append(f"{label}: status {status!r} is not one of {', '.join(STATUSES)}")
        else:
            status, refs_cell = "tested", row[-1]
        refs = [r for r in re.findall(r"`([^`]+)`", refs_cell)
                if PY_TEST.match(r) or RUST_TEST.match(r)]
        if status == "tested" and not refs:
            problems.append(f"{label}: marked tested but names no test")
        for ref in refs:
            name, doc, where = find_test(ref)
            if doc is None:
                problems.append(f"{label}: test {ref} not found (looked in {where})")
            elif not cites(label, name, doc):
                problems.append(f"{label}: test {ref} ({where}) does not cite {label} "
                                "in its name or doc comment")

    if problems:
        print(f"docs/conformance.md: {len(problems)} problem(s)")
        for p in problems:
            print(f"  - {p}")
        return 1
    counts = {s: sum(1 for r in rows.values() if len(r) == 4 and r[2] == s) for s in STATUSES}
    print(f"docs/conformance.md: {len(checklist)} checklist IDs and {len(vectors)} vectors covered ("
          + ", ".join(f"{n} {s}" for s, n in counts.items()) + ")")
    return 0


if __name__ == "__main__":
    sys.exit(main())
