-- One narrow row per alliance measurement in scope: integer keys, the session, the total and the
-- two parts of the alliance that can fall: the bond (SRS relationship item, WAI-SR Bond subscale)
-- and goal/task agreement (SRS goals + approach items, WAI-SR Goal + Task). Part scores are
-- per-item means, weighted by registry-derived weights in detect_params. Sessions dated after a
-- higher-numbered session of their series are not in scope (dated_out_of_order.sql). No strings
-- are carried: every window downstream sorts what it carries, and flags join the names back at
-- the end.
with measures as (
    select
        clinic_id,
        client_id,
        coalesce(episode_id, '') as episode_id,
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

series as (
    select
        -- one integer key per series (and per client) so every window sorts integers, not
        -- three strings; detect.py checks that no two series share a key
        -- a client's treatment episodes are separate series (each restarts its sessions);
        -- symptom_context keys its rows the same way
        hash(m.clinic_id, m.client_id, m.episode_id, m.instrument) as series_key,
        hash(m.clinic_id, m.client_id) as client_key,
        p.param_key,
        m.session_number,
        m.session_date,
        m.total,
        -- weighted per-item means; an item outside the part has weight 0, and a missing item
        -- of the part makes the part score null (never read as 0)
        case when p.bond_w1 > 0 then m.item_1 * p.bond_w1 else 0 end
        + case when p.bond_w2 > 0 then m.item_2 * p.bond_w2 else 0 end
        + case when p.bond_w3 > 0 then m.item_3 * p.bond_w3 else 0 end
        + case when p.bond_w4 > 0 then m.item_4 * p.bond_w4 else 0 end
        + case when p.bond_w5 > 0 then m.item_5 * p.bond_w5 else 0 end
        + case when p.bond_w6 > 0 then m.item_6 * p.bond_w6 else 0 end
        + case when p.bond_w7 > 0 then m.item_7 * p.bond_w7 else 0 end
        + case when p.bond_w8 > 0 then m.item_8 * p.bond_w8 else 0 end
        + case when p.bond_w9 > 0 then m.item_9 * p.bond_w9 else 0 end
        + case when p.bond_w10 > 0 then m.item_10 * p.bond_w10 else 0 end
        + case when p.bond_w11 > 0 then m.item_11 * p.bond_w11 else 0 end
        + case when p.bond_w12 > 0 then m.item_12 * p.bond_w12 else 0 end
            as bond_score,
        case when p.goal_task_w1 > 0 then m.item_1 * p.goal_task_w1 else 0 end
        + case when p.goal_task_w2 > 0 then m.item_2 * p.goal_task_w2 else 0 end
        + case when p.goal_task_w3 > 0 then m.item_3 * p.goal_task_w3 else 0 end
        + case when p.goal_task_w4 > 0 then m.item_4 * p.goal_task_w4 else 0 end
        + case when p.goal_task_w5 > 0 then m.item_5 * p.goal_task_w5 else 0 end
        + case when p.goal_task_w6 > 0 then m.item_6 * p.goal_task_w6 else 0 end
        + case when p.goal_task_w7 > 0 then m.item_7 * p.goal_task_w7 else 0 end
        + case when p.goal_task_w8 > 0 then m.item_8 * p.goal_task_w8 else 0 end
        + case when p.goal_task_w9 > 0 then m.item_9 * p.goal_task_w9 else 0 end
        + case when p.goal_task_w10 > 0 then m.item_10 * p.goal_task_w10 else 0 end
        + case when p.goal_task_w11 > 0 then m.item_11 * p.goal_task_w11 else 0 end
        + case when p.goal_task_w12 > 0 then m.item_12 * p.goal_task_w12 else 0 end
            as goal_task_score,
        m.total * p.per_item_scale as total_per_item
    from measures as m
    inner join params as p
        on m.clinic_id = p.clinic_id
        and m.instrument = p.instrument
)

select
    s.*,
    -- each part against the whole, per item: the session's shared swing cancels, a fall in one
    -- part does not
    s.bond_score - s.total_per_item as bond_contrast,
    s.goal_task_score - s.total_per_item as goal_task_contrast
from series as s
-- a session dated after a higher-numbered session of its series is left out (its windows would
-- rest on later-dated sessions: a look-ahead); dated_out_of_order.sql finds them, and
-- detect_excluded_sessions records them for the clinic's data team
anti join detect_dated_out_of_order as x
    on s.series_key = x.series_key
    and s.session_number = x.session_number
