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


def _mask_text_every_pattern(text: str) -> str:
    """mask_text as it was before its shortcut: the three patterns tried on every text."""
    s = re.sub(
        r"(?<![0-9])([1-9][0-9]{5})([0-9]{8})([0-9]{3}[0-9Xx])(?![0-9])",
        lambda m: m.group(1) + "********" + m.group(3)[-4:],
        text,
    )
    s = re.sub(
        r"(?<![0-9])([1-9][0-9]{5})([0-9]{6})([0-9]{3})(?![0-9])",
        lambda m: m.group(1) + "*****" + m.group(3)[-4:],
        s,
    )
    return re.sub(
        r"(?<![0-9])(1[3-9][0-9])([0-9]{4})([0-9]{4})(?![0-9])", lambda m: m.group(1) + "****" + m.group(3), s
    )


@given(
    st.lists(
        st.one_of(
            st.text(alphabet="0123456789", min_size=9, max_size=19),
            st.text(alphabet="0123456789Xx户主电话 ，-*", max_size=8),
            st.text(max_size=4),
        ),
        max_size=6,
    ).map("".join)
)
def test_text_without_a_long_run_of_digits_skips_the_patterns_and_masks_the_same(text):
    """The workbooks mask every string cell; mask_text skips the patterns for text that has no run
    of 11 digits (no phone, no ID can be in it). The shortcut changes no result, digit-heavy or not."""
    assert mask_text(text) == _mask_text_every_pattern(text)


def test_numbers_at_the_edge_of_the_shortcut_are_masked_or_kept_as_before():
    assert mask_text("13912345678") == "139****5678"  # exactly 11 characters
    assert mask_text("电话1391234567") == "电话1391234567"  # ten digits: not a phone
    assert mask_text("户主37040619800101123x") == "户主370406********123x"
