-- Status refresh, step 3: write the statuses that changed (status_since moves with the status).
update household_category
set status = t.status, status_since = t.since
from tmp_status_category as t
where household_category.household_key = t.household_key
    and household_category.category = t.category
    and household_category.status <> t.status;

update household
set status = t.status, status_since = t.since
from tmp_status_household as t
where household.household_key = t.household_key
    and household.status <> t.status;

update cadre
set status = t.status, status_since = t.since
from tmp_status_cadre as t
where cadre.cadre_key = t.cadre_key
    and cadre.status <> t.status;

update petition_case
set status = t.status, status_since = t.since
from tmp_status_case as t
where petition_case.case_key = t.case_key
    and petition_case.status <> t.status;
