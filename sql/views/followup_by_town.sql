-- Follow-through per town (the household's town): households paired tonight, on their whole visit
-- history whoever their cadre was, and the visits made to the town's households.
with households as (
    select
        coalesce(town, '(unknown)') as town,
        count(*) as households,
        sum(1 - visited_in_person) as not_visited_in_person,
        sum(overdue) as overdue,
        sum(case when last_contact_on is null then 1 else 0 end) as never_contacted,
        max(days_since_contact) as max_days_since_contact,
        sum(case when help_flag = 'above' then 1 else 0 end) as help_above_band,
        sum(case when help_flag = 'below' then 1 else 0 end) as help_below_band,
        sum(carried_over) as carried_over
    from followup_household
    group by coalesce(town, '(unknown)')
),

made as (
    select
        coalesce(h.town, '(unknown)') as town,
        sum(case when v.visit_kind = 'in_person' then 1 else 0 end) as in_person_visits,
        sum(case when v.visit_kind = 'phone' then 1 else 0 end) as phone_contacts,
        sum(v.problems_found) as problems_found,
        sum(v.problems_solved) as problems_solved,
        coalesce(sum(v.help_value), 0) as help_value,
        sum(case when v.help_source_kind = 'public' then 1 else 0 end) as public_fund_entries
    from visit as v
    left join household as h on h.household_key = v.household_key
    group by coalesce(h.town, '(unknown)')
),

towns as (
    select town from households
    union
    select town from made
)

select
    t.town,
    coalesce(h.households, 0) as households,
    coalesce(h.not_visited_in_person, 0) as not_visited_in_person,
    coalesce(h.overdue, 0) as overdue,
    coalesce(h.never_contacted, 0) as never_contacted,
    h.max_days_since_contact,
    coalesce(h.help_above_band, 0) as help_above_band,
    coalesce(h.help_below_band, 0) as help_below_band,
    coalesce(h.carried_over, 0) as carried_over,
    coalesce(m.in_person_visits, 0) as in_person_visits,
    coalesce(m.phone_contacts, 0) as phone_contacts,
    coalesce(m.problems_found, 0) as problems_found,
    coalesce(m.problems_solved, 0) as problems_solved,
    coalesce(m.help_value, 0) as help_value,
    coalesce(m.public_fund_entries, 0) as public_fund_entries
from towns as t
left join households as h on h.town = t.town
left join made as m on m.town = t.town
