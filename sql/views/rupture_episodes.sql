-- One row per alert episode (a rupture), with its outcome in words analysts use: repaired,
-- ongoing, or ended in dropout (the client stopped attending while it was open), its length in
-- sessions (opening to closing, or to its latest flagged session while open) and the alliance
-- at opening, lowest point and closing.
create or replace view rupture_episodes as
with flagged_sessions as (
    select
        alert_episode_id,
        count(*) as flagged_sessions,
        max(session_number) as last_flagged_session,
        min(total) as lowest_total
    from flags
    group by alert_episode_id
),

opening as (
    select
        e.alert_episode_id,
        m_open.total as opening_total,
        m_close.total as closing_total
    from alert_episodes as e
    left join measurements as m_open
        on e.clinic_id = m_open.clinic_id
        and e.client_id = m_open.client_id
        and e.instrument = m_open.instrument
        and e.episode_id = coalesce(m_open.episode_id, '')
        and e.opened_session = m_open.session_number
    left join measurements as m_close
        on e.clinic_id = m_close.clinic_id
        and e.client_id = m_close.client_id
        and e.instrument = m_close.instrument
        and e.episode_id = coalesce(m_close.episode_id, '')
        and e.closed_session = m_close.session_number
)

select
    e.alert_episode_id,
    e.clinic_id,
    e.client_id,
    e.clinician_id,
    e.instrument,
    e.opened_session,
    e.opened_date,
    e.closed_session,
    e.closed_date,
    e.max_severity,
    case e.status
        when 'repaired' then 'repaired'
        when 'ended' then 'ended_in_dropout'
        else 'ongoing'
    end as outcome,
    -- an open episode runs to its latest flagged session (its flags go on while the alliance
    -- stays down, past the last session that raised the alert)
    coalesce(e.closed_session, greatest(e.last_flag_session, s.last_flagged_session))
    - e.opened_session + 1 as length_sessions,
    s.flagged_sessions,
    o.opening_total,
    s.lowest_total,
    o.closing_total
from alert_episodes as e
left join flagged_sessions as s on e.alert_episode_id = s.alert_episode_id
left join opening as o on e.alert_episode_id = o.alert_episode_id
