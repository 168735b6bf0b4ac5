-- One line per file in the ledger: do the rows add up?
-- (rows_read = rows_loaded + rows_already + rows_rejected; rows_already: identical to rows an
-- earlier file of the department loaded, as in a corrected file dropped again)
with rejected as (
    select
        file_id,
        count(distinct sheet || '#' || cast(row_number as varchar(20))) as rejected_rows
    from rejected_row
    group by file_id
)

select
    f.file_id,
    f.department,
    f.file_name,
    f.status,
    f.rows_read,
    f.rows_loaded,
    f.rows_already,
    f.rows_rejected,
    coalesce(r.rejected_rows, 0) as rejected_rows_listed,
    case
        when f.status <> 'loaded' then null
        when f.rows_read = f.rows_loaded + f.rows_already + f.rows_rejected
            and f.rows_rejected = coalesce(r.rejected_rows, 0) then 1
        else 0
    end as balanced
from intake_file as f
left join rejected as r on r.file_id = f.file_id
