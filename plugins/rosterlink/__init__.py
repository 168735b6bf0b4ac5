"""rosterlink: department rosters -> one hardship register and one set of cadre pairings, nightly.

Stages, one module each: ``intake`` (scan + ledger), ``read`` (spreadsheets -> raw tables),
``normalise`` (raw cells -> canonical values), ``validate`` (Great Expectations suites),
``warehouse`` (schema, load), ``link`` (dedup), ``status`` (dynamic management),
``pairing`` (cadre assignment) and ``export`` (workbooks for people).
"""

__version__ = "0.1.0"
