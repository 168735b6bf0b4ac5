-- How the load is spread over active cadres: for each rank and kind of target, how many cadres
-- carry 0, 1, 2 ... current pairs. Households are counted for every active cadre, key cases for
-- county-level cadres only (only they lead cases).
with active_cadres as (
    select
        c.cadre_key,
        coalesce(c.rank, 'ordinary') as rank
    from cadre as c
    where c.status = 'active'
),

loads as (
    select
        a.cadre_key,
        a.rank,
        sum(case when p.target_kind = 'household' then 1 else 0 end) as households,
        sum(case when p.target_kind = 'case' then 1 else 0 end) as cases
    from active_cadres as a
    left join pairing as p on p.cadre_key = a.cadre_key and p.valid_to is null
    group by
        a.cadre_key,
        a.rank
),

household_loads as (
    select
        rank,
        'household' as target_kind,
        households as pair_load
    from loads
),

case_loads as (
    select
        rank,
        'case' as target_kind,
        cases as pair_load
    from loads
    where rank = 'county'
),

all_loads as (
    select
        rank,
        target_kind,
        pair_load
    from household_loads
    union all
    select
        rank,
        target_kind,
        pair_load
    from case_loads
)

select
    rank,
    target_kind,
    pair_load,
    count(*) as cadres
from all_loads
group by
    rank,
    target_kind,
    pair_load
