# detect as a container: `docker build -t detect .`, then see docs/deploy.md.
# PYTHON_IMAGE: an official Python image, or the same from a registry mirror on a closed
# network (`--build-arg PYTHON_IMAGE=mirror.example/library/python:3.12-slim`).
ARG PYTHON_IMAGE=python:3.12-slim
FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY . .
RUN python -m pip wheel --no-deps -w /dist .

FROM ${PYTHON_IMAGE}
COPY --from=build /dist/ /tmp/dist/
# [panther]: what panther-analysis's global helpers import, for Panther rules.
RUN wheel="$(ls /tmp/dist/detect-*.whl)" \
    && python -m pip install --no-cache-dir "${wheel}[panther]" \
    && rm -rf /tmp/dist \
    && groupadd --system --gid 10001 detect \
    && useradd --system --uid 10001 --gid detect --home-dir /var/lib/detect \
        --shell /usr/sbin/nologin detect \
    && mkdir -p /var/lib/detect /etc/detect \
    && chown detect:detect /var/lib/detect
# The state (SQLite: checkpoint, correlation state, outbox) and the quarantine live on the
# volume; detect.yaml is mounted read-only at /etc/detect and names absolute paths under
# /var/lib/detect (state.path, quarantine). Secrets come from the environment.
VOLUME ["/var/lib/detect"]
WORKDIR /var/lib/detect
# Numeric, so that a platform enforcing non-root (Kubernetes runAsNonRoot) can check it.
USER 10001:10001
ENTRYPOINT ["detect"]
CMD ["run", "--config", "/etc/detect/detect.yaml"]
