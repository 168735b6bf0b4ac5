-- Files and rows per night, department and file status (the dashboard's "files by status" and
-- "rows loaded/rejected by department"). A night is the run that first recorded the file.
with files as (
    select
        coalesce(f.run_id, '(none)') as run_id,
        f.department,
        f.status,
        f.rows_read,
        f.rows_loaded,
        f.rows_rejected
    from intake_file as f
)

select
    run_id,
    department,
    status,
    count(*) as files,
    coalesce(sum(rows_read), 0) as rows_read,
    coalesce(sum(rows_loaded), 0) as rows_loaded,
    coalesce(sum(rows_rejected), 0) as rows_rejected
from files
group by
    run_id,
    department,
    status
