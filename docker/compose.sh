#!/bin/sh
# Docker Compose with whichever flavour is installed: the v2 plugin (`docker compose`) if it answers, else the
# standalone `docker-compose` (v2 binary or the older v1). Arguments are passed on unchanged:
#
#   docker/compose.sh -f docker/compose.yml --env-file docker/compose.env up --build
#
# FLAME_COMPOSE_DEBUG=1 prints the command chosen. Exits 127 with what to install when neither is there.
set -eu

run() {
    if [ "${FLAME_COMPOSE_DEBUG:-}" = 1 ]; then
        echo "compose.sh: $*" >&2
    fi
    exec "$@"
}

if command -v docker >/dev/null 2>&1 && docker compose version >/dev/null 2>&1; then
    run docker compose "$@"
fi
if command -v docker-compose >/dev/null 2>&1; then
    # v1 builds with its own classic builder unless told to hand builds to the docker CLI with BuildKit, which
    # Dockerfile.analysis needs (RUN --mount); v2 builds with BuildKit anyway and ignores both variables.
    export COMPOSE_DOCKER_CLI_BUILD=1 DOCKER_BUILDKIT=1
    run docker-compose "$@"
fi

printf '%s\n' >&2 \
    "error: Docker Compose is not installed: neither \`docker compose\` (the v2 plugin) nor \`docker-compose\` was found." \
    "Install one of them, then run the command again:" \
    "  - the compose plugin: Docker Desktop includes it; on Linux install the docker-compose-plugin package" \
    "    from Docker's repository (https://docs.docker.com/compose/install/linux/)" \
    "  - or the standalone command: apt-get install docker-compose (Debian/Ubuntu), brew install docker-compose (macOS)" \
    "Or point make at another compose command: make compose-up COMPOSE=\"podman compose\""
exit 127
