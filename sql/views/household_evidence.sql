-- Lineage of every household: each source row that contributed to it, from which department,
-- file and row, and how the link stage tied it (id | model | new | review_split).
select
    sr.entity_key as household_key,
    h.head_name,
    h.status as household_status,
    rec.department,
    rec.roster,
    rec.category,
    f.file_id,
    f.file_name,
    sr.sheet,
    sr.row_number,
    rec.person_name,
    rec.town,
    rec.village,
    rec.event,
    rec.event_date,
    sr.link_method,
    sr.match_probability
from source_row as sr
inner join household as h on h.household_key = sr.entity_key
inner join intake_file as f on f.file_id = sr.file_id
inner join source_record as rec
    on rec.file_id = sr.file_id
    and rec.sheet = sr.sheet
    and rec.row_number = sr.row_number
where sr.entity_kind = 'household'
