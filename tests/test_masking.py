"""One masking function for everything people read; one formula guard for everything written."""

from __future__ import annotations

import datetime as dt
import re
import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from rosterlink.core import idnumber
from rosterlink.core.masking import defuse, mask_id, mask_phone, mask_text, mask_value

FULL_ID = re.compile(r"[0-9]{17}[0-9X]")
FULL_PHONE = re.compile(r"1[3-9][0-9]{9}")
FULL_WIDTH = str.maketrans("0123456789Xx", "０１２３４５６７８９Ｘｘ")


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


def _mask_text_ascii(text: str) -> str:
    """mask_text as it was before full-width digits: ASCII digits only, every pattern tried."""
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


def _mask_text_every_pattern(text: str) -> str:
    """mask_text without its shortcut: the three patterns (digits ASCII or full-width) tried on
    every text."""
    d, first, x = "[0-9０-９]", "[1-9１-９]", "[0-9０-９XxＸｘ]"
    s = re.sub(
        rf"(?<!{d})({first}{d}{{5}})({d}{{8}})({d}{{3}}{x})(?!{d})",
        lambda m: m.group(1) + "********" + m.group(3)[-4:],
        text,
    )
    s = re.sub(
        rf"(?<!{d})({first}{d}{{5}})({d}{{6}})({d}{{3}})(?!{d})",
        lambda m: m.group(1) + "*****" + m.group(3)[-4:],
        s,
    )
    return re.sub(
        rf"(?<!{d})([1１][3-9３-９]{d})({d}{{4}})({d}{{4}})(?!{d})",
        lambda m: m.group(1) + "****" + m.group(3),
        s,
    )


@given(
    st.lists(
        st.one_of(
            st.text(alphabet="0123456789", min_size=9, max_size=19),
            st.text(alphabet="0123456789０１２３４５６７８９", min_size=9, max_size=19),
            st.text(alphabet="0123456789Xx户主电话 ，-*ＸｘＸ１３８", max_size=8),
            st.text(max_size=4),
        ),
        max_size=6,
    ).map("".join)
)
def test_text_without_a_long_run_of_digits_skips_the_patterns_and_masks_the_same(text):
    """The workbooks mask every string cell; mask_text skips the patterns for text that has no run
    of 11 digits (no phone, no ID can be in it). The shortcut changes no result, digit-heavy or not."""
    assert mask_text(text) == _mask_text_every_pattern(text)
    if not re.search("[０-９]", text):  # no full-width digit: masked exactly as before
        assert mask_text(text) == _mask_text_ascii(text)


def test_numbers_at_the_edge_of_the_shortcut_are_masked_or_kept_as_before():
    assert mask_text("13912345678") == "139****5678"  # exactly 11 characters
    assert mask_text("电话1391234567") == "电话1391234567"  # ten digits: not a phone
    assert mask_text("户主37040619800101123x") == "户主370406********123x"


def test_full_width_id_numbers_and_phones_in_file_sheet_names_and_values_are_masked():
    """A clerk's input method types ３７０４０６… and １３８…: in a file name, a sheet name or a value
    shown to people they are masked like their ASCII forms (the same characters kept, the same shown)."""
    person_id = idnumber.make("370406", dt.date(1960, 5, 4), 1)
    fw_id, fw_phone = person_id.translate(FULL_WIDTH), "13812345678".translate(FULL_WIDTH)
    assert mask_text(f"civil_affairs/补报_{fw_id}.xlsx") == (
        f"civil_affairs/补报_{fw_id[:6]}********{fw_id[-4:]}.xlsx"
    )
    assert mask_text(f"王伟（{fw_phone}）") == "王伟（１３８****５６７８）"  # a sheet named after the head
    assert mask_text("旧证号３７０４０６６００５０４００２") == "旧证号３７０４０６*****００２"  # 15 digits
    assert (
        mask_text("户主身份证号３７０４０６１９６００５０４００２ｘ")
        == "户主身份证号３７０４０６********００２ｘ"
    )
    # typed half in one width, half in the other: still one number
    mixed = person_id[:9] + fw_id[9:]
    masked = mask_text(f"第3行 户主 {mixed}，电话 138１２３４５６７８")
    assert masked == f"第3行 户主 {person_id[:6]}********{fw_id[-4:]}，电话 138****５６７８"
    for shown in (
        masked,
        mask_text(f"补报_{fw_id}_{fw_phone}.csv"),
        mask_text(f"sheet {fw_id} / {fw_phone}"),
    ):
        folded = unicodedata.normalize("NFKC", shown)
        assert person_id not in folded
        assert "13812345678" not in folded


@given(
    st.lists(
        st.one_of(
            st.text(alphabet="0123456789０１２３４５６７８９", min_size=11, max_size=18),
            st.sampled_from(("1", "１", "13", "１３", "X", "Ｘ", "ｘ", "户", " ")),
        ),
        max_size=5,
    ).map("".join)
)
def test_masking_full_width_digits_is_masking_their_nfkc_form(text):
    """What is masked does not depend on the digits' width: mask, then fold to ASCII (NFKC), gives
    what folding first and masking gives."""
    assert unicodedata.normalize("NFKC", mask_text(text)) == mask_text(unicodedata.normalize("NFKC", text))
