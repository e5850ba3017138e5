#!/bin/sh
# Make sure a Docker engine answers. As root on Debian, install Debian's docker.io (and
# debootstrap, which makes the base image where no registry is reachable) and start dockerd.
# Anywhere else, say what to do instead of guessing.
set -eu

if docker info >/dev/null 2>&1; then
    exit 0
fi

if [ "$(id -u)" != 0 ] || [ ! -r /etc/debian_version ]; then
    echo "labkit: no Docker engine answers (docker info failed)." >&2
    echo "  Start Docker (Docker Desktop, or 'sudo systemctl start docker') and make sure" >&2
    echo "  your user may use it ('docker info' works), then run this command again." >&2
    exit 1
fi

if ! command -v dockerd >/dev/null 2>&1 || ! command -v debootstrap >/dev/null 2>&1; then
    echo "labkit: installing Debian's docker.io and debootstrap" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io debootstrap >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
    if [ -d /run/systemd/system ]; then
        systemctl start docker
    else
        echo "labkit: starting dockerd (log: /var/log/labkit-dockerd.log)" >&2
        nohup dockerd >/var/log/labkit-dockerd.log 2>&1 &
    fi
fi

tries=0
until docker info >/dev/null 2>&1; do
    tries=$((tries + 1))
    if [ "$tries" -gt 120 ]; then
        echo "labkit: dockerd did not answer within 60 s; its log:" >&2
        tail -n 20 /var/log/labkit-dockerd.log >&2 || true
        exit 1
    fi
    sleep 0.5
done
