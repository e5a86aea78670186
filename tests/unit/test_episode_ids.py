"""Alert episode ids split back exactly: a ':' inside a clinic, client or episode id is escaped,
so erasing one client never touches another's answers or notices (edge cases of issue 15)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from pipelines.answers import inbox
from pipelines.answers.tokens import Answer, AnswerClaim
from pipelines.deliver.alerts import _ledger_path, _save, erase_from_notices
from pipelines.detect.ids import client_prefix, id_part, is_clients_episode

# client 'a' (plain and in treatment episode 'b'), and client 'a:b'
A_PLAIN = "c1:a:SRS:5"
A_EPISODE = "c1:a:b:SRS:9"
A_COLON_B = "c1:a%3Ab:SRS:5"


def test_id_parts_escape_the_separator_and_the_escape() -> None:
    assert id_part("a:b") == "a%3Ab"
    assert id_part("50%:x") == "50%25%3Ax"
    assert id_part("plain-id_1") == "plain-id_1"
    assert client_prefix("c:1", "a") == "c%3A1:a:"
    assert is_clients_episode(A_EPISODE, "c1", "a")
    assert not is_clients_episode(A_COLON_B, "c1", "a")
    assert is_clients_episode(A_COLON_B, "c1", "a:b")


def test_erasing_a_client_drops_its_notices_and_no_one_elses(tmp_path: Path) -> None:
    """The ledger split ids from the right, which missed a named treatment episode's ids."""
    _save(_ledger_path(tmp_path, "c1"), {A_PLAIN, A_EPISODE, A_COLON_B})
    assert erase_from_notices(tmp_path, "c1", "a") == 2
    assert inbox.json.loads(_ledger_path(tmp_path, "c1").read_text()) == [A_COLON_B]


def test_erasing_a_client_drops_its_answers_and_no_one_elses(tmp_path: Path) -> None:
    """A prefix of 'c1:a:' also took client 'a:b''s answers ('c1:a:b:...' before escaping)."""
    expires = dt.date(2030, 1, 1)
    for episode in (A_PLAIN, A_EPISODE, A_COLON_B):
        inbox.append(tmp_path, AnswerClaim(episode, "t1", Answer.TALKED, expires))
    assert inbox.erase(tmp_path, "c1", "a") == 2
    assert [a.alert_episode_id for a in inbox.pending(tmp_path)] == [A_COLON_B]
