"""The docs the code cites are in the repository, and say what they claim to say."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RELIABILITY = ROOT / "docs" / "reliability.md"
CASE = re.compile(r"(?<![A-Za-z0-9_])([FBSLIH]\d{1,2})[a-z]?(?![A-Za-z0-9_])")
SHORT = {"i": "tests/integration", "u": "tests/unit", "web": "tests/web"}


def _sources() -> list[Path]:
    return [p for folder in ("mailforum", "tests", "bench") for p in sorted((ROOT / folder).rglob("*.py"))]


def test_every_reliability_case_cited_in_code_has_its_row():
    rows = set(re.findall(r"^\| ([FBSLIH]\d+) \|", RELIABILITY.read_text(), re.M))
    cited = {
        (case, f"{path.relative_to(ROOT)}:{number}")
        for path in _sources()
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if "RELIABILITY" in line
        for case in CASE.findall(line)
    }
    assert len(cited) > 100  # the scan finds the citations
    assert not sorted(f"{case} at {where}" for case, where in cited if case not in rows)


def test_every_test_the_reliability_page_names_exists():
    missing = []
    current: Path | None = None
    for match in re.finditer(r"\b(i|u|web)/(test_\w+)(?:::(\w+))?|…::(\w+)", RELIABILITY.read_text()):
        short, module, name, same_module = match.groups()
        if module:
            current = ROOT / SHORT[short] / f"{module}.py"
        assert current is not None
        if not current.exists():
            missing.append(str(current))
        elif (name or same_module) and f"def {name or same_module}(" not in current.read_text():
            missing.append(f"{current.name}::{name or same_module}")
    assert not missing


def test_code_cites_no_issue_numbers():
    cited = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in sorted((ROOT / "mailforum").rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"\bissue \d+", line)
    ]
    assert not cited, "say what the issue meant instead"
