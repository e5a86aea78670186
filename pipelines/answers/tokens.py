"""Answer links: one opaque, signed token per (alert episode, clinician, answer, expiry).

A token is deterministic authenticated encryption built on HMAC-SHA256 alone (the SIV
construction): ``tag = HMAC-SHA256(mac_key, fields)[:16]`` binds the four fields, and the fields
travel encrypted under a keystream ``HMAC-SHA256(enc_key, tag || counter)``. So the URL holds
nothing readable (an episode id names the client: ``clinic:client:instrument:session``), and a
token is accepted only if decrypting it and signing the result again gives the same tag.

The signing secret comes from the deployment (`settings.answer_settings_from_env`); both keys
are derived from it. During a rotation the previous secret still verifies, so links already
sent keep working until they expire. The same four fields always give the same token, so a
digest rendered twice is the same digest.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
from dataclasses import dataclass
from enum import StrEnum

_VERSION = b"\x01"
_TAG_BYTES = 16
_SEP = "\x1f"


class Answer(StrEnum):
    """What a clinician says about one alert (the code stored in `alert_feedback.answer`)."""

    TALKED = "rupture_talked"  # a rupture, and a repair conversation was held
    NOT_YET = "rupture_not_yet"  # a rupture, not talked about yet
    NO_RUPTURE = "not_rupture"

    @property
    def label(self) -> str:
        return ANSWER_LABELS[self]

    @property
    def is_rupture(self) -> bool:
        return self is not Answer.NO_RUPTURE


ANSWER_LABELS = {
    Answer.TALKED: "A rupture: we talked about it",
    Answer.NOT_YET: "A rupture: not talked about yet",
    Answer.NO_RUPTURE: "Not a rupture",
}


class TokenRefused(Exception):
    """A token that is not accepted. `reason` (malformed | signature | expired) is for counts
    and tests; the clinician sees one plain page that says nothing about any client."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True)
class AnswerClaim:
    """The fields a valid token carries."""

    alert_episode_id: str
    clinician_id: str
    answer: Answer
    expires: dt.date  # valid through this date (UTC)


def _keys(secret: bytes) -> tuple[bytes, bytes]:
    mac = hmac.new(secret, b"alliance-watch answer links: mac", hashlib.sha256).digest()
    enc = hmac.new(secret, b"alliance-watch answer links: enc", hashlib.sha256).digest()
    return mac, enc


def _keystream(enc_key: bytes, tag: bytes, n: int) -> bytes:
    blocks = []
    for counter in range((n + 31) // 32):
        blocks.append(hmac.new(enc_key, tag + counter.to_bytes(4, "big"), hashlib.sha256).digest())
    return b"".join(blocks)[:n]


def _xor(data: bytes, stream: bytes) -> bytes:
    return bytes(a ^ b for a, b in zip(data, stream, strict=True))


def _fields(claim: AnswerClaim) -> bytes:
    for part in (claim.alert_episode_id, claim.clinician_id):
        if _SEP in part:
            raise ValueError("an episode or clinician code holds a control character")
    return _SEP.join(
        [claim.alert_episode_id, claim.clinician_id, claim.answer.value, claim.expires.isoformat()]
    ).encode("utf-8")


def sign(claim: AnswerClaim, secret: bytes) -> str:
    """The URL-safe token (no padding) for `claim`, signed with `secret`."""
    mac_key, enc_key = _keys(secret)
    plain = _fields(claim)
    tag = hmac.new(mac_key, _VERSION + plain, hashlib.sha256).digest()[:_TAG_BYTES]
    sealed = _VERSION + tag + _xor(plain, _keystream(enc_key, tag, len(plain)))
    return base64.urlsafe_b64encode(sealed).rstrip(b"=").decode("ascii")


def _open(sealed: bytes, secret: bytes) -> bytes | None:
    mac_key, enc_key = _keys(secret)
    tag, cipher = sealed[1 : 1 + _TAG_BYTES], sealed[1 + _TAG_BYTES :]
    plain = _xor(cipher, _keystream(enc_key, tag, len(cipher)))
    expected = hmac.new(mac_key, _VERSION + plain, hashlib.sha256).digest()[:_TAG_BYTES]
    return plain if hmac.compare_digest(tag, expected) else None


def verify(token: str, secrets: tuple[bytes, ...], today: dt.date | None = None) -> AnswerClaim:
    """The claim of a token signed by any of `secrets` and not expired on `today` (UTC), else
    TokenRefused: malformed (not a token at all), signature (tampered, or signed by a secret
    this deployment does not hold), expired."""
    if not secrets:
        raise TokenRefused("signature")
    if not token or len(token) > 1024:
        raise TokenRefused("malformed")
    try:
        sealed = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise TokenRefused("malformed") from None
    if len(sealed) <= 1 + _TAG_BYTES or sealed[:1] != _VERSION:
        raise TokenRefused("malformed")
    plain = next((p for s in secrets if (p := _open(sealed, s)) is not None), None)
    if plain is None:
        raise TokenRefused("signature")
    try:
        episode, clinician, answer, expires = plain.decode("utf-8").split(_SEP)
        claim = AnswerClaim(episode, clinician, Answer(answer), dt.date.fromisoformat(expires))
    except ValueError:  # signed by us, so never expected: refuse rather than guess
        raise TokenRefused("malformed") from None
    if claim.expires < (today or dt.datetime.now(dt.UTC).date()):
        raise TokenRefused("expired")
    return claim


def answer_links(
    alert_episode_id: str,
    clinician_id: str,
    expires: dt.date,
    secret: bytes,
    base_url: str,
) -> tuple[tuple[str, str], ...]:
    """(label, URL) for each of the three answers, in the order a digest shows them."""
    return tuple(
        (
            a.label,
            f"{base_url}/a/{sign(AnswerClaim(alert_episode_id, clinician_id, a, expires), secret)}",
        )
        for a in Answer
    )
