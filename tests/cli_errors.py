"""What every user error of the command line must look like, for the tests that provoke them."""

from __future__ import annotations


def assert_one_line_error(status: int, lines: list[str], *words: str) -> None:
    """Exit 2 and exactly one line, ``optbench: error: ...``, naming each of ``words``."""
    assert status == 2, lines
    assert len(lines) == 1, lines
    assert lines[0].startswith("optbench: error: ")
    for word in words:
        assert word in lines[0], lines
