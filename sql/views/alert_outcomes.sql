-- One row per alert episode with the clinician's answer (issue 19) and what followed: the last
-- answer counts (answer_count says how many were given), the days from the episode's opening
-- session to that answer, whether the alliance was back at the client's own baseline within two
-- sessions of the opening (detection's repair point, `alert_episodes.closed_session`), and
-- whether the episode ended in dropout. Unanswered episodes have a null answer: answers are
-- never required. Rates per clinic and clinician: `alert_answer_rates`.
create or replace view alert_outcomes as
with answers as (
    select
        alert_episode_id,
        arg_max(answer, answered_at) as answer,
        max(answered_at) as answered_at,
        count(*) as answer_count
    from alert_feedback
    group by alert_episode_id
),

joined as (
    select
        e.alert_episode_id,
        e.clinic_id,
        e.client_id,
        e.clinician_id,
        e.instrument,
        e.opened_session,
        e.opened_date,
        e.max_severity,
        e.status,
        e.closed_session,
        a.answer,
        a.answered_at,
        coalesce(a.answer_count, 0) as answer_count,
        -- the answer's UTC date against the opening session's date
        date_diff('day', e.opened_date, cast(timezone('UTC', a.answered_at) as date))
            as days_to_answer
    from alert_episodes as e
    left join answers as a on e.alert_episode_id = a.alert_episode_id
),

judged as (
    select
        *,
        answer is not null as is_answered,
        answer in ('rupture_talked', 'rupture_not_yet') as is_rupture_confirmed,
        answer = 'rupture_talked' as is_conversation_held,
        status = 'repaired' and closed_session - opened_session <= 2 as is_recovered,
        status = 'ended' as is_dropout
    from joined
)

select * from judged
