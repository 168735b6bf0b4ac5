-- Rejected rows per night, department, field and reason code (what clerks most often get wrong).
select
    coalesce(f.run_id, '(none)') as run_id,
    f.department,
    r.field,
    r.reason_code,
    count(*) as findings,
    count(distinct cast(r.file_id as varchar(20)) || '#' || r.sheet || '#' || cast(r.row_number as varchar(20)))
        as rejected_rows
from rejected_row as r
inner join intake_file as f on f.file_id = r.file_id
group by
    coalesce(f.run_id, '(none)'),
    f.department,
    r.field,
    r.reason_code
