"""The checker corpus (tests/data/checkzone): each bad file says what we must answer.

A bad file's `; expect:` lines are its problems, in order, without the file name in front
("line 7: ..." for "FILE, line 7: ...", anything else for "FILE: ..."). Good files load.
`tests/integration/test_checkzone_differential.py` holds the same files against BIND's
named-checkzone.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gslb.dns.zonefile import load_zone_file
from gslb.errors import ConfigError
from gslb.zone.name import from_text, key

CORPUS = Path(__file__).resolve().parents[2] / "data" / "checkzone"
ORIGIN = "example.test."  # unless the file says "; origin: NAME"  # every file's zone
GOOD = sorted((CORPUS / "good").glob("*.zone"))
BAD = sorted((CORPUS / "bad").glob("*.zone"))


def origin_of(path: Path) -> str:
    """The zone a corpus file is for: "; origin: NAME" in it, else ORIGIN."""
    found = re.search(rb"^; origin: (\S+)$", path.read_bytes(), re.MULTILINE)
    return found.group(1).decode() if found else ORIGIN


def expected_problems(path: Path) -> tuple[str, ...]:
    """The `; expect:` lines of a corpus file, as the loader words them."""
    out = []
    for line in path.read_bytes().decode("utf-8", "replace").splitlines():
        if line.startswith("; expect: "):
            text = line.removeprefix("; expect: ")
            out.append(f"{path}, {text}" if text.startswith("line ") else f"{path}: {text}")
    return tuple(out)


def test_the_corpus_is_big_enough() -> None:
    assert len(GOOD) >= 10
    assert len(BAD) >= 40
    assert all(expected_problems(path) for path in BAD)
    assert not any(expected_problems(path) for path in GOOD)


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_a_bad_file_is_rejected_with_its_lines(path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_zone_file(path, key(from_text(origin_of(path))))
    assert info.value.problems == expected_problems(path)


@pytest.mark.parametrize("path", GOOD, ids=[p.stem for p in GOOD])
def test_a_good_file_loads(path: Path) -> None:
    assert load_zone_file(path, key(from_text(origin_of(path))))
