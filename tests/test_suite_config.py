"""Named benchmark suites (`eval/run.py --config NAME`)."""

from __future__ import annotations

import re

import pytest

from studio import settings
from studio.bench import load_suite_file
from studio.errors import StudioError


def test_an_unknown_suite_lists_the_suites_that_exist():
    names = sorted(p.stem for p in (settings.REPO_ROOT / "eval" / "suites").glob("*.yaml"))
    assert names  # quick, sod-dev, ...
    with pytest.raises(StudioError, match=r"no suite 'isnet-builds'.*\(suites: (.+)\)") as err:
        load_suite_file("isnet-builds")
    listed = re.search(r"\(suites: (.+)\)", str(err.value)).group(1).split(", ")
    assert listed == names


def test_every_suite_the_help_names_exists():
    """`eval/run.py` names suites in its usage (`--config NAME`) and its --help (`e.g. A or
    B`): each must load (the help once advertised `isnet-builds`, which did not exist)."""
    text = (settings.REPO_ROOT / "eval" / "run.py").read_text()
    named = set(re.findall(r"--config ([\w-]+)", text))
    example = re.search(r"e\.g\. ([\w-]+) or ([\w-]+)", text)
    named |= set(example.groups()) if example else set()
    assert named
    for name in sorted(named):
        assert load_suite_file(name)["name"] == name
