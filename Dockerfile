# dns-sidecar: split-horizon DNS for Docker stacks.
#
#   docker build -t dns-sidecar .
#
# Without a registry, examples/compose/build-offline.sh makes a Debian base with debootstrap and
# `docker import`, fills .wheels/ with pip, and builds with:
#
#   docker build --build-arg BASE_IMAGE=local/bookworm-python \
#                --build-arg PIP_NO_INDEX=1 --build-arg PIP_FIND_LINKS=/src/.wheels -t dns-sidecar .
ARG BASE_IMAGE=python:3.12-slim

# -- build: the project and its dependencies in a virtual environment ----------------------------
FROM ${BASE_IMAGE} AS build
ARG PIP_NO_INDEX=
ARG PIP_FIND_LINKS=
RUN python3 -m venv /opt/dns-sidecar
COPY . /src
RUN /opt/dns-sidecar/bin/pip install --no-cache-dir --disable-pip-version-check /src \
 && /opt/dns-sidecar/bin/pip uninstall -y --disable-pip-version-check pip

# -- the image: the virtual environment, an unprivileged user, nothing else ----------------------
FROM ${BASE_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="dns-sidecar" \
      org.opencontainers.image.description="Split-horizon DNS for Docker stacks: container labels and zonefiles answered locally, the rest relayed upstream" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT"
COPY --from=build /opt/dns-sidecar /opt/dns-sidecar
# The image starts as root only to join the Docker socket's group, whatever its id on this host,
# and then runs the server as dns-sidecar with NET_BIND_SERVICE alone (image/entrypoint.sh).
# A regular uid (not --system): 5353 is above the system range, and a fixed uid is what a host
# directory's owner can be set to.
COPY image/entrypoint.sh /usr/local/bin/dns-sidecar-entrypoint
RUN chmod 755 /usr/local/bin/dns-sidecar-entrypoint \
 && useradd --uid 5353 --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin dns-sidecar \
 && mkdir -p /zones && chown dns-sidecar:dns-sidecar /zones
# Every flag has an env var: DNS_SIDECAR_<FLAG> (e.g. DNS_SIDECAR_UPSTREAM=192.0.2.53).
ENV DNS_SIDECAR_LISTEN=0.0.0.0:53 \
    DNS_SIDECAR_ZONEFILE=/zones \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
EXPOSE 53/udp 53/tcp
HEALTHCHECK --interval=5s --timeout=3s --start-period=5s --retries=3 \
    CMD ["dns-sidecar-entrypoint", "health"]
ENTRYPOINT ["dns-sidecar-entrypoint"]
CMD ["serve"]
