"""The answer endpoint: a small FastAPI app that the Airflow API server mounts at `/answers`
(`dags/plugins/answers_plugin.py`); FastAPI is not Airflow, so it lives here and is tested by
serving it with uvicorn alone.

`GET /answers/a/<token>`: a valid token's answer goes to the answers inbox
(`pipelines.answers.inbox`) and the clinician sees a confirmation page with the two other
answers as links (the last answer counts). A tampered, foreign or expired token gets a plain
refusal page that says nothing about any client. The app never opens the warehouse, never
stores or logs a token, and logs no client or clinic code: the URL itself is opaque.
"""

from __future__ import annotations

import datetime as dt
import html
import logging
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from pipelines.answers import inbox as answers_inbox
from pipelines.answers.tokens import Answer, AnswerClaim, TokenRefused, sign, verify
from pipelines.settings import answer_settings_from_env, paths_from_env

log = logging.getLogger("alliance_watch.answers")

# no caching, no referrer (the token must not travel on to another site), no indexing
_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
}

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font-family: -apple-system, "Segoe UI", Roboto, Arial, sans-serif; color: #1f2933;
       max-width: 34rem; margin: 3rem auto; padding: 0 1rem; line-height: 1.5; }}
h1 {{ font-size: 1.3rem; }}
.answer {{ padding: .8rem 1rem; background: #e8f5e9; border-left: 4px solid #2e7d32; }}
.refused {{ padding: .8rem 1rem; background: #fdecea; border-left: 4px solid #b71c1c; }}
a.change {{ display: inline-block; margin: .3rem .5rem .3rem 0; padding: .4rem .7rem;
           border: 1px solid #2b5d8a; border-radius: 4px; color: #2b5d8a; text-decoration: none; }}
.small {{ font-size: .85rem; color: #616e7c; }}
</style></head>
<body>{body}</body></html>
"""

_REFUSAL_TEXT = {
    "expired": (
        "This answer link has expired",
        "Answer links hold for a few weeks. The alert may still show in your next digest, "
        "with fresh links.",
    ),
}
_REFUSAL_DEFAULT = (
    "This answer link is not valid",
    "The link is incomplete or was not issued by this Alliance Watch installation. Nothing "
    "was recorded. If you copied it from your digest, open it from the digest again.",
)


def _page(title: str, body: str, status: int) -> HTMLResponse:
    return HTMLResponse(
        _PAGE.format(title=html.escape(title), body=body), status_code=status, headers=_HEADERS
    )


def refusal_page(reason: str) -> HTMLResponse:
    title, text = _REFUSAL_TEXT.get(reason, _REFUSAL_DEFAULT)
    status = 410 if reason == "expired" else 403 if reason == "signature" else 400
    body = (
        f"<h1>{html.escape(title)}</h1>"
        f'<p class="refused">{html.escape(text)}</p>'
        '<p class="small">Answers are never required.</p>'
    )
    return _page(title, body, status)


def confirmation_page(claim: AnswerClaim, secret: bytes) -> HTMLResponse:
    """The answer recorded, and the two others as links relative to this page (`a/<token>`:
    wherever the app is mounted), signed with the current secret."""
    others = [a for a in Answer if a is not claim.answer]
    links = "".join(
        '<a class="change" href="'
        f"{sign(AnswerClaim(claim.alert_episode_id, claim.clinician_id, a, claim.expires), secret)}"
        f'">{html.escape(a.label)}</a>'
        for a in others
    )
    body = (
        "<h1>Thank you: your answer is recorded</h1>"
        f'<p class="answer"><strong>{html.escape(claim.answer.label)}</strong></p>'
        "<p>Not what you meant? Change it (the last answer counts):</p>"
        f"<p>{links}</p>"
        '<p class="small">Your answer shows in your next weekly digest, with the scores that '
        "followed. Answers are never required. You can close this page.</p>"
    )
    return _page("Answer recorded", body, 200)


def create_app(answers_dir: Path | None = None) -> FastAPI:
    """The app. `answers_dir`: the inbox (default: `paths_from_env().answers`, read at each
    request like the secrets, so a rotated secret needs no restart)."""
    app = FastAPI(
        title="Alliance Watch answers",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )

    @app.get("/a/{token}", response_class=HTMLResponse)
    def answer(token: str) -> HTMLResponse:
        settings = answer_settings_from_env()
        try:
            claim = verify(token, settings.secrets)
        except TokenRefused as refused:
            log.info("answer link refused: %s", refused.reason)
            return refusal_page(refused.reason)
        answers_inbox.append(answers_dir or paths_from_env().answers, claim)
        log.info("answer recorded: %s", claim.answer.value)
        return confirmation_page(claim, settings.secrets[0])

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok", "checked": dt.datetime.now(dt.UTC).isoformat()}

    return app
