-- The pairs in force tonight, with both sides described (what the pairing workbook lists).
select
    p.pairing_id,
    p.cadre_key,
    c.name as cadre_name,
    c.rank as cadre_rank,
    c.unit as cadre_unit,
    c.town as cadre_town,
    p.target_kind,
    p.target_key,
    coalesce(h.head_name, k.petitioner_name) as target_name,
    coalesce(h.town, k.town) as target_town,
    case when c.town = coalesce(h.town, k.town) then 1 else 0 end as same_town,
    p.valid_from,
    p.made_reason
from pairing as p
inner join cadre as c on c.cadre_key = p.cadre_key
left join household as h on p.target_kind = 'household' and h.household_key = p.target_key
left join petition_case as k on p.target_kind = 'case' and k.case_key = p.target_key
where p.valid_to is null
