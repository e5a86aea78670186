"""Airflow plugin: serves the clinicians' answer links (`pipelines.answers.app`) from the API
server at `/answers`, so `make up` and the compose stack need no process of their own.

Airflow does not put its own authentication in front of plugin FastAPI apps: the app's only
input is a signed, opaque token, and it never opens the warehouse (it writes the answers inbox).
Loaded once when the API server starts (AIRFLOW__CORE__PLUGINS_FOLDER points here); the DAG
processor skips this folder (dags/.airflowignore).
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from pipelines.answers.app import create_app


class AnswersPlugin(AirflowPlugin):
    name = "alliance_watch_answers"
    fastapi_apps = [
        {"app": create_app(), "url_prefix": "/answers", "name": "Alliance Watch answers"}
    ]
