"""The table the stages pass along: one recognised sheet of an intake file (:class:`SheetTable`).

Made by the read stage (:mod:`rosterlink.intake.read`), normalised and validated by the next two
stages, and read back from the staging table by :mod:`rosterlink.warehouse.staging`: the type lives
here, below all of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd


@dataclass
class SheetTable:
    """One recognised sheet.

    ``frame`` (object dtype): ``_row`` (int, the clerk's Excel row number, or the CSV line number
    where the record starts), then one column per field of the roster, in the roster's order;
    fields missing from the sheet are all None.
    """

    sheet: str
    roster: str
    header_row: int
    headers: dict[str, str]
    frame: pd.DataFrame
