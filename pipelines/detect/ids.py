"""Alert episode ids (`flags.alert_episode_id`, built in `sql/detect/flags.sql`):
`clinic:client[:episode]:instrument:opened_session`, each id part with '%' written %25 and ':'
%3A, so that the parts split back exactly (client 'a' of treatment episode 'b' and client 'a:b'
once shared 'c1:a:b:SRS:5')."""

from __future__ import annotations


def id_part(value: str) -> str:
    """One clinic, client or episode id as it stands in an alert episode id."""
    return value.replace("%", "%25").replace(":", "%3A")


def client_prefix(clinic_id: str, client_id: str) -> str:
    """The start of every alert episode id of one client (every treatment episode)."""
    return f"{id_part(clinic_id)}:{id_part(client_id)}:"


def is_clients_episode(alert_episode_id: str, clinic_id: str, client_id: str) -> bool:
    """Whether an alert episode id is one of this client's."""
    return alert_episode_id.startswith(client_prefix(clinic_id, client_id))
