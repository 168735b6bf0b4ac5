-- Pairs in force tonight by the target's town: households and key cases, with how many pairs
-- have a cadre from the same town and how many distinct cadres carry them.
with current_pairs as (
    select
        p.pairing_id,
        p.cadre_key,
        p.target_kind,
        coalesce(h.town, k.town) as target_town,
        c.town as cadre_town
    from pairing as p
    inner join cadre as c on c.cadre_key = p.cadre_key
    left join household as h on p.target_kind = 'household' and h.household_key = p.target_key
    left join petition_case as k on p.target_kind = 'case' and k.case_key = p.target_key
    where p.valid_to is null
)

select
    coalesce(target_town, '(unknown)') as town,
    target_kind,
    count(*) as pairs,
    sum(case when cadre_town = target_town then 1 else 0 end) as same_town_pairs,
    count(distinct cadre_key) as cadres
from current_pairs
group by
    coalesce(target_town, '(unknown)'),
    target_kind
