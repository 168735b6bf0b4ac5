-- One line per open key case: does it have a county-level leader tonight, and which of the
-- five ones (五个一: leader, work team, resolution plan, responsible unit, stabilisation measures)
-- are missing. No petitioner names or ID numbers.
with current_leaders as (
    select
        p.target_key as case_key,
        count(*) as leaders,
        sum(case when c.rank = 'county' and c.status = 'active' then 1 else 0 end) as county_leaders
    from pairing as p
    inner join cadre as c on c.cadre_key = p.cadre_key
    where
        p.target_kind = 'case'
        and p.valid_to is null
    group by p.target_key
),

open_cases as (
    select
        k.case_key,
        k.case_number,
        k.town,
        k.registered_on,
        coalesce(l.leaders, 0) as leaders,
        coalesce(l.county_leaders, 0) as county_leaders,
        case when trim(coalesce(k.work_team, '')) <> '' then 1 else 0 end as has_work_team,
        case when trim(coalesce(k.resolution_plan, '')) <> '' then 1 else 0 end as has_resolution_plan,
        case when trim(coalesce(k.responsible_unit, '')) <> '' then 1 else 0 end as has_responsible_unit,
        case
            when trim(coalesce(k.stabilisation_measures, '')) <> '' then 1 else 0
        end as has_stabilisation_measures
    from petition_case as k
    left join current_leaders as l on l.case_key = k.case_key
    where k.status = 'open'
)

select
    case_key,
    case_number,
    town,
    registered_on,
    case when leaders > 0 then 1 else 0 end as has_leader,
    case when county_leaders > 0 then 1 else 0 end as has_county_leader,
    has_work_team,
    has_resolution_plan,
    has_responsible_unit,
    has_stabilisation_measures,
    (case when leaders > 0 then 0 else 1 end)
    + (1 - has_work_team)
    + (1 - has_resolution_plan)
    + (1 - has_responsible_unit)
    + (1 - has_stabilisation_measures) as gaps
from open_cases
