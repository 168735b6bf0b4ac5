-- Follow-through per work unit (the cadre's unit): households its cadres are paired with tonight
-- (on their whole visit history) and the visits its cadres made.
with households as (
    select
        coalesce(c.unit, '(unknown)') as unit,
        count(*) as households,
        count(distinct f.cadre_key) as cadres,
        sum(1 - f.visited_in_person) as not_visited_in_person,
        sum(f.overdue) as overdue,
        sum(case when f.last_contact_on is null then 1 else 0 end) as never_contacted,
        max(f.days_since_contact) as max_days_since_contact,
        sum(case when f.help_flag = 'above' then 1 else 0 end) as help_above_band,
        sum(case when f.help_flag = 'below' then 1 else 0 end) as help_below_band
    from followup_household as f
    inner join cadre as c on c.cadre_key = f.cadre_key
    group by coalesce(c.unit, '(unknown)')
),

made as (
    select
        coalesce(c.unit, '(unknown)') as unit,
        sum(case when v.visit_kind = 'in_person' then 1 else 0 end) as in_person_visits,
        sum(case when v.visit_kind = 'phone' then 1 else 0 end) as phone_contacts,
        sum(v.problems_found) as problems_found,
        sum(v.problems_solved) as problems_solved,
        coalesce(sum(v.help_value), 0) as help_value,
        sum(case when v.help_source_kind = 'public' then 1 else 0 end) as public_fund_entries
    from visit as v
    inner join cadre as c on c.cadre_key = v.cadre_key
    group by coalesce(c.unit, '(unknown)')
),

units as (
    select unit from households
    union
    select unit from made
)

select
    u.unit,
    coalesce(h.cadres, 0) as cadres,
    coalesce(h.households, 0) as households,
    coalesce(h.not_visited_in_person, 0) as not_visited_in_person,
    coalesce(h.overdue, 0) as overdue,
    coalesce(h.never_contacted, 0) as never_contacted,
    h.max_days_since_contact,
    coalesce(h.help_above_band, 0) as help_above_band,
    coalesce(h.help_below_band, 0) as help_below_band,
    coalesce(m.in_person_visits, 0) as in_person_visits,
    coalesce(m.phone_contacts, 0) as phone_contacts,
    coalesce(m.problems_found, 0) as problems_found,
    coalesce(m.problems_solved, 0) as problems_solved,
    coalesce(m.help_value, 0) as help_value,
    coalesce(m.public_fund_entries, 0) as public_fund_entries
from units as u
left join households as h on h.unit = u.unit
left join made as m on m.unit = u.unit
