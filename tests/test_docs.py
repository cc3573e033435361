"""docs/instructor.md: it times every notebook, and its links point at what exists."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "instructor.md"
NOTEBOOKS = sorted(path.name for path in (ROOT / "notebooks").glob("*.ipynb"))


def guide() -> str:
    return GUIDE.read_text(encoding="utf-8")


def test_the_readme_and_the_last_notebook_lead_to_the_guide():
    assert "(docs/instructor.md)" in (ROOT / "README.md").read_text(encoding="utf-8")


def test_every_notebook_has_a_row_with_its_measured_run_time_and_a_learner_time():
    rows = {}
    for line in guide().splitlines():
        match = re.match(r"\| \[(\d\d-[a-z0-9-]+\.ipynb)\]\(\.\./notebooks/\1\) \|(.*)\|$", line)
        if match:
            rows[match.group(1)] = [cell.strip() for cell in match.group(2).split("|")]
    assert sorted(rows) == NOTEBOOKS, "docs/instructor.md: one row per notebook in notebooks/"
    for name, (_what, headless, learner) in rows.items():
        assert re.fullmatch(r"\d+(\.\d)? s", headless), f"{name}: run time in seconds, measured: {headless!r}"
        assert re.fullmatch(r"\d+ min", learner), f"{name}: learner time in minutes: {learner!r}"


def learner_minutes() -> dict[str, int]:
    """The learner time of each notebook, by number, from the guide's table."""
    return {
        match.group(1): int(match.group(2))
        for match in re.finditer(r"^\| \[(\d\d)-[^|]*\|[^|]*\|[^|]*\| (\d+) min \|$", guide(), re.MULTILINE)
    }


def test_the_workshop_plan_gives_each_notebook_its_learner_time_and_a_slot_that_long():
    rows = re.findall(r"^\| (\d\d):(\d\d) \| (.*) \|$", guide(), re.MULTILINE)
    starts = [60 * int(hours) + int(minutes) for hours, minutes, _ in rows]
    planned = {}
    for (_, _, what), start, end in zip(rows, starts, starts[1:], strict=False):
        match = re.match(r"(?:.*; )?\*\*(\d\d)\*\* .*\((\d+) min\)", what)
        if match:
            planned[match.group(1)] = int(match.group(2))
            assert end - start >= int(match.group(2)), f"the plan's slot for {match.group(1)} is too short"
    assert planned == learner_minutes(), "the workshop plan: every notebook, with the table's learner time"


def test_relative_links_point_at_files_that_exist():
    for target in re.findall(r"\]\((?!https?://|#)([^)\s]+)\)", guide()):
        assert (GUIDE.parent / target.split("#")[0]).resolve().exists(), f"broken link: {target}"


def test_the_binder_and_nbgitpuller_links_open_a_notebook_that_exists():
    (binder,) = re.findall(r"\((https://mybinder\.org/v2/gh/[^)\s]+)\)", guide())
    parts = urlparse(binder)
    assert parts.path.startswith("/v2/gh/YOUR-ORG/smtplab/")
    (urlpath,) = parse_qs(parts.query)["urlpath"]
    assert urlpath.startswith("lab/tree/notebooks/") and urlpath.rsplit("/", 1)[1] in NOTEBOOKS

    (pull,) = re.findall(r"(https://hub\.example\.edu/hub/user-redirect/git-pull\?\S+)", guide())
    query = parse_qs(urlparse(pull).query)
    assert query["repo"] == ["https://github.com/YOUR-ORG/smtplab"] and query["branch"] == ["main"]
    (opened,) = query["urlpath"]
    assert opened.startswith("lab/tree/smtplab/notebooks/") and opened.rsplit("/", 1)[1] in NOTEBOOKS
    assert unquote(pull) != pull, "the link's parameters are URL-encoded"
