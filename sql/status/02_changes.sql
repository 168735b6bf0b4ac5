-- Status refresh, step 2: how many entities change status tonight, by kind and new status.
select 'household' as kind, t.status, count(*) as n
from tmp_status_household as t
inner join household as h on h.household_key = t.household_key
where h.status <> t.status
group by t.status
union all
select 'cadre' as kind, t.status, count(*) as n
from tmp_status_cadre as t
inner join cadre as c on c.cadre_key = t.cadre_key
where c.status <> t.status
group by t.status
union all
select 'case' as kind, t.status, count(*) as n
from tmp_status_case as t
inner join petition_case as k on k.case_key = t.case_key
where k.status <> t.status
group by t.status;
