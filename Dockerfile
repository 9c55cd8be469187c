# dns-sidecar: split-horizon DNS for Docker stacks.
#
#   docker build -t dns-sidecar .
#
# Without a registry, build on any Debian-like base that has python3 and python3-venv (for
# example one made with debootstrap and `docker import`), and install from a wheel directory:
#
#   docker build --build-arg BASE_IMAGE=local/bookworm \
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
# Port 53 without root: the server runs on its own copy of the interpreter that carries only the
# file capability cap_net_bind_service (the xattr is what `setcap cap_net_bind_service=+ep` writes;
# set from Python so no extra tool is needed). Docker's default capability set allows it; with
# `cap_drop: [ALL]`, add NET_BIND_SERVICE back, and do not set no-new-privileges.
RUN cp "$(readlink -f /opt/dns-sidecar/bin/python3)" /opt/dns-sidecar/bin/dns-sidecar-python \
 && python3 -c "import os, struct; os.setxattr('/opt/dns-sidecar/bin/dns-sidecar-python', \
        'security.capability', struct.pack('<5I', 0x02000001, 1 << 10, 0, 0, 0))" \
 && useradd --system --uid 5353 --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin dns-sidecar \
 && mkdir -p /zones && chown dns-sidecar:dns-sidecar /zones
# Every flag has an env var: DNS_SIDECAR_<FLAG> (e.g. DNS_SIDECAR_UPSTREAM=192.0.2.53).
ENV DNS_SIDECAR_LISTEN=0.0.0.0:53 \
    DNS_SIDECAR_ZONEFILE=/zones \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER dns-sidecar
EXPOSE 53/udp 53/tcp
HEALTHCHECK --interval=5s --timeout=3s --start-period=5s --retries=3 \
    CMD ["/opt/dns-sidecar/bin/python3", "-m", "sidecar", "health"]
ENTRYPOINT ["/opt/dns-sidecar/bin/dns-sidecar-python", "-m", "sidecar"]
CMD ["serve"]
