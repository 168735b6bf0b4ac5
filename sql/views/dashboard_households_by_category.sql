-- Households by programme category and status (a household may be in several categories).
select
    hc.category,
    hc.status,
    count(*) as households
from household_category as hc
group by
    hc.category,
    hc.status
