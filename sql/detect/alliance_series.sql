-- One row per alliance measurement in scope, with the registry parameters of its clinic and
-- instrument and the two parts of the alliance that can fall: the bond (SRS relationship item,
-- WAI-SR Bond subscale) and goal/task agreement (SRS goals + approach items, WAI-SR Goal + Task).
-- Part scores are per-item means, weighted by registry-derived weights in detect_params.
with measures as (
    select
        clinic_id,
        client_id,
        clinician_id,
        session_number,
        session_date,
        instrument,
        total,
        item_1, item_2, item_3, item_4, item_5, item_6,
        item_7, item_8, item_9, item_10, item_11, item_12
    from detect_scope_measurements
),

params as (
    select * from detect_params
),

with_params as (
    select
        m.*,
        p.cutoff,
        p.reliable_change,
        p.part_drop,
        -- weighted per-item means; an item outside the part has weight 0, and a missing item
        -- of the part makes the part score null (never read as 0)
        case when p.bond_w[1] > 0 then m.item_1 * p.bond_w[1] else 0 end
        + case when p.bond_w[2] > 0 then m.item_2 * p.bond_w[2] else 0 end
        + case when p.bond_w[3] > 0 then m.item_3 * p.bond_w[3] else 0 end
        + case when p.bond_w[4] > 0 then m.item_4 * p.bond_w[4] else 0 end
        + case when p.bond_w[5] > 0 then m.item_5 * p.bond_w[5] else 0 end
        + case when p.bond_w[6] > 0 then m.item_6 * p.bond_w[6] else 0 end
        + case when p.bond_w[7] > 0 then m.item_7 * p.bond_w[7] else 0 end
        + case when p.bond_w[8] > 0 then m.item_8 * p.bond_w[8] else 0 end
        + case when p.bond_w[9] > 0 then m.item_9 * p.bond_w[9] else 0 end
        + case when p.bond_w[10] > 0 then m.item_10 * p.bond_w[10] else 0 end
        + case when p.bond_w[11] > 0 then m.item_11 * p.bond_w[11] else 0 end
        + case when p.bond_w[12] > 0 then m.item_12 * p.bond_w[12] else 0 end
            as bond_score,
        case when p.goal_task_w[1] > 0 then m.item_1 * p.goal_task_w[1] else 0 end
        + case when p.goal_task_w[2] > 0 then m.item_2 * p.goal_task_w[2] else 0 end
        + case when p.goal_task_w[3] > 0 then m.item_3 * p.goal_task_w[3] else 0 end
        + case when p.goal_task_w[4] > 0 then m.item_4 * p.goal_task_w[4] else 0 end
        + case when p.goal_task_w[5] > 0 then m.item_5 * p.goal_task_w[5] else 0 end
        + case when p.goal_task_w[6] > 0 then m.item_6 * p.goal_task_w[6] else 0 end
        + case when p.goal_task_w[7] > 0 then m.item_7 * p.goal_task_w[7] else 0 end
        + case when p.goal_task_w[8] > 0 then m.item_8 * p.goal_task_w[8] else 0 end
        + case when p.goal_task_w[9] > 0 then m.item_9 * p.goal_task_w[9] else 0 end
        + case when p.goal_task_w[10] > 0 then m.item_10 * p.goal_task_w[10] else 0 end
        + case when p.goal_task_w[11] > 0 then m.item_11 * p.goal_task_w[11] else 0 end
        + case when p.goal_task_w[12] > 0 then m.item_12 * p.goal_task_w[12] else 0 end
            as goal_task_score
    from measures as m
    inner join params as p
        on m.clinic_id = p.clinic_id
        and m.instrument = p.instrument
),

series as (
    select
        -- one integer key per series (and per client) so every window sorts integers, not
        -- three strings; detect.py checks that no two series share a key
        hash(clinic_id, client_id, instrument) as series_key,
        hash(clinic_id, client_id) as client_key,
        clinic_id,
        client_id,
        clinician_id,
        session_number,
        session_date,
        instrument,
        total,
        cutoff,
        reliable_change,
        part_drop,
        bond_score,
        goal_task_score
    from with_params
)

select * from series
