-- Status refresh, step 4: drop the temporary tables.
drop table if exists tmp_status_latest;
drop table if exists tmp_status_category;
drop table if exists tmp_status_household;
drop table if exists tmp_status_cadre;
drop table if exists tmp_status_case;
