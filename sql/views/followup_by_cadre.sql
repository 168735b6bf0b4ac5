-- Follow-through per cadre (走访帮扶): the households the cadre is paired with tonight, judged on
-- their whole visit history (whoever made the visits), and what the cadre did (visits made,
-- problems found and solved, help given, help recorded as coming from public funds).
with households as (
    select
        cadre_key,
        count(*) as households,
        sum(1 - visited_in_person) as not_visited_in_person,
        sum(overdue) as overdue,
        sum(case when last_contact_on is null then 1 else 0 end) as never_contacted,
        max(days_since_contact) as max_days_since_contact,
        sum(case when help_flag = 'above' then 1 else 0 end) as help_above_band,
        sum(case when help_flag = 'below' then 1 else 0 end) as help_below_band
    from followup_household
    group by cadre_key
),

made as (
    select
        cadre_key,
        sum(case when visit_kind = 'in_person' then 1 else 0 end) as in_person_visits,
        sum(case when visit_kind = 'phone' then 1 else 0 end) as phone_contacts,
        sum(problems_found) as problems_found,
        sum(problems_solved) as problems_solved,
        coalesce(sum(help_value), 0) as help_value,
        sum(case when help_source_kind = 'public' then 1 else 0 end) as public_fund_entries,
        max(visit_date) as last_visit_on
    from visit
    group by cadre_key
)

select
    c.cadre_key,
    c.name,
    c.unit,
    c.town,
    c.status,
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
    coalesce(m.public_fund_entries, 0) as public_fund_entries,
    m.last_visit_on
from cadre as c
left join households as h on h.cadre_key = c.cadre_key
left join made as m on m.cadre_key = c.cadre_key
where h.cadre_key is not null or m.cadre_key is not null
