-- Status refresh, step 1: the statuses the loaded records imply, into temporary tables.
-- Portable SQL (SQLite 3.33+ and PostgreSQL). Statuses come only from explicit change rows:
-- per roster and entity the latest event wins, by event date (a row without a date counts as the
-- oldest), ties by record_id (load order). Only events dated on or before the night's as_of count:
-- re-running an earlier night after later nights loaded later-dated rows must not apply them.
drop table if exists tmp_status_latest;
drop table if exists tmp_status_category;
drop table if exists tmp_status_household;
drop table if exists tmp_status_cadre;
drop table if exists tmp_status_case;

create temporary table tmp_status_latest as
select roster, entity_key, event, event_date
from (
    select
        r.roster,
        s.entity_key,
        r.event,
        r.event_date,
        row_number() over (
            partition by r.roster, s.entity_key
            order by
                case when r.event_date is null then 0 else 1 end desc,
                r.event_date desc,
                r.record_id desc
        ) as recency
    from source_record as r
    -- a row's entity key is in its lineage (a row not linked yet has none, and does not count)
    inner join source_row as s
        on s.file_id = r.file_id
        and s.sheet = r.sheet
        and s.row_number = r.row_number
    where r.roster in ('hardship_adjustment', 'cadre_change', 'case_closure', 'case')
        and r.event is not null
        and (r.event_date is null or r.event_date <= :as_of)
) as ranked
where recency = 1;

-- hardship follows its adjustment rows (新增 add -> active, 退出/脱困 exit -> exited);
-- orphan and old-member categories stay active
create temporary table tmp_status_category as
select
    hc.household_key,
    hc.category,
    case
        when hc.category = 'hardship' and l.event = 'exit' then 'exited'
        else 'active'
    end as status,
    case when hc.category = 'hardship' then l.event_date end as since
from household_category as hc
left join tmp_status_latest as l
    on l.roster = 'hardship_adjustment'
    and l.entity_key = hc.household_key;

-- a household is active while any of its categories is; else exited since its latest category exit
create temporary table tmp_status_household as
select
    household_key,
    case
        when sum(case when status = 'active' then 1 else 0 end) > 0 then 'active'
        else 'exited'
    end as status,
    case
        when sum(case when status = 'active' then 1 else 0 end) > 0 then null
        else max(since)
    end as since
from tmp_status_category
group by household_key;

-- a cadre follows the change list (调离/退休 leave -> departed, 新增 join -> active)
create temporary table tmp_status_cadre as
select
    c.cadre_key,
    case when l.event = 'leave' then 'departed' else 'active' end as status,
    l.event_date as since
from cadre as c
left join tmp_status_latest as l
    on l.roster = 'cadre_change'
    and l.entity_key = c.cadre_key;

-- a case is closed by a closure row (since the latest one), else it follows its ledger rows
create temporary table tmp_status_case as
select
    k.case_key,
    case
        when cl.entity_key is not null then 'closed'
        when lg.event = 'closed' then 'closed'
        else 'open'
    end as status,
    case when cl.entity_key is not null then cl.event_date else lg.event_date end as since
from petition_case as k
left join tmp_status_latest as cl
    on cl.roster = 'case_closure'
    and cl.entity_key = k.case_key
left join tmp_status_latest as lg
    on lg.roster = 'case'
    and lg.entity_key = k.case_key;
