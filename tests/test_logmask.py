"""A file name holding an ID number or a phone is masked in every log line of the package, whichever
handler (Airflow's task log, the terminal) writes it."""

from __future__ import annotations

import datetime as dt
import logging

from rosterlink.core import idnumber
from rosterlink.ops import logmask


def test_a_file_name_with_an_id_and_a_phone_is_logged_masked(caplog):
    person_id, phone = idnumber.make("370406", dt.date(1960, 5, 4), 1), "13812345678"
    logmask.install()
    logmask.install()  # once is enough: installing again adds nothing
    assert sum(isinstance(h, logmask.MaskingHandler) for h in logging.getLogger("rosterlink").handlers) == 1
    with caplog.at_level(logging.INFO):
        logging.getLogger("rosterlink.intake.scan").info(
            "ledger: file %s recorded as %s", f"civil_affairs/补报_{person_id}_{phone}.csv", "rejected"
        )
    (record,) = [r for r in caplog.records if r.name == "rosterlink.intake.scan"]
    text = record.getMessage()
    assert person_id not in text
    assert phone not in text
    assert text.startswith("ledger: file civil_affairs/补报_3704")
