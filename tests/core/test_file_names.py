"""Names of outputs made from a study's or a patient's text (viewer.core.io.file_names): never a
path elsewhere, a hidden or an empty name."""

from __future__ import annotations

import pytest

from viewer.core.io.file_names import file_name_part


@pytest.mark.parametrize(("text", "keep", "expected"), [
    ("demo-001", "-_.", "demo-001"),
    ("MRN-0099", "-_.", "MRN-0099"),
    ("P-1.0.0", "-_", "P-1_0_0"),  # a folder name without dots
    ("Roe^John", "-_", "Roe_John"),
    ("../../etc/passwd", "-_.", "etc_passwd"),
    ("a/b\\c", "-_.", "a_b_c"),
    ("..", "-_.", "x"),
    (".hidden", "-_.", "hidden"),
    ("  spaced id  ", "-_.", "spaced_id"),
    ("nul\x00byte", "-_.", "nul_byte"),
    ("Müller, Zoë", "-_.", "Müller__Zoë"),
    ("", "-_.", "x"),
    ("///", "-_.", "x"),
])
def test_a_name_part_keeps_letters_and_digits_and_never_leaves_its_folder(text, keep, expected):
    part = file_name_part(text, "x", keep=keep)
    assert part == expected
    assert "/" not in part and "\\" not in part and "\x00" not in part
    assert not part.startswith(".") and part not in ("", ".", "..")
