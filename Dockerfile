# The Alliance Watch image: Airflow 3.3 with the project installed from the lock file.
FROM apache/airflow:3.3.2-python3.11
USER root
RUN mkdir -p /opt/alliance-watch /srv/alliance-watch && chown -R airflow:0 /opt/alliance-watch /srv/alliance-watch
USER airflow
WORKDIR /opt/alliance-watch
COPY --chown=airflow:0 pyproject.toml uv.lock README.md ./
COPY --chown=airflow:0 pipelines ./pipelines
COPY --chown=airflow:0 sql ./sql
COPY --chown=airflow:0 expectations ./expectations
COPY --chown=airflow:0 dags ./dags
RUN pip install --no-cache-dir uv && uv export --frozen --all-extras --no-hashes --no-emit-project > /tmp/req.txt \
    && pip install --no-cache-dir -r /tmp/req.txt && pip install --no-cache-dir --no-deps .
