"""Clinicians' one-click answers to alerts (issue 19): signed links (`tokens`), the answer endpoint
(`app`, mounted on the Airflow API server), its durable inbox (`inbox`) and loading into
`alert_feedback` (`load`)."""
