"""One masking function for everything people read; one formula guard for everything written."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from rosterlink.core.masking import defuse, mask_id, mask_phone, mask_text, mask_value

FULL_ID = re.compile(r"[0-9]{17}[0-9X]")
FULL_PHONE = re.compile(r"1[3-9][0-9]{9}")


def test_id_and_phone_masks_have_the_agreed_shape():
    assert mask_id("37040619800101123X") == "370406********123X"
    assert mask_phone("13812345678") == "138****5678"


def test_short_or_broken_numbers_never_show_most_of_their_digits():
    for value in ("1358547680", "370406198001011", "37040619800101123", "0632123456"):
        shown = sum(c.isdigit() for c in mask_value("phone", value)) + 0
        assert shown <= 10
        assert mask_value("phone", value) != value
        assert mask_value("id_number", value) != value


def test_numbers_inside_free_text_are_masked():
    text = "户主370406198001011239，电话13812345678，旧号370406800101123"
    masked = mask_text(text)
    assert not FULL_ID.search(masked)
    assert not FULL_PHONE.search(masked)
    assert "370406800101123" not in masked


@given(st.text())
def test_masking_never_leaves_a_full_id_or_phone(text):
    masked = mask_text(text)
    assert not FULL_ID.search(masked.replace("*", "")) or FULL_ID.search(text)
    assert not re.search(r"(?<![0-9])[1-9][0-9]{16}[0-9X](?![0-9])", masked)
    assert not re.search(r"(?<![0-9])1[3-9][0-9]{9}(?![0-9])", masked)


def test_formula_starts_are_defused_and_other_values_untouched():
    for raw in ("=1+1", "+86", "-3", "@SUM(A1)", "\\t=x"):
        if raw[0] in "=+-@":
            assert defuse(raw) == "'" + raw
    assert defuse("王伟") == "王伟"
    assert defuse(3) == 3
    assert defuse(None) is None
