# PHP-FPM as Debian ships it. The base is debian:bookworm-slim from a registry, or the same tag
# made locally by `labkit images build` where no registry is reachable.
FROM debian:bookworm-slim
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
       php8.2-fpm libfcgi-bin procps iproute2 acl \
    && rm -rf /var/lib/apt/lists/*
COPY common/users.sh /usr/local/sbin/labkit-users
RUN sh /usr/local/sbin/labkit-users
COPY www/ /var/www/html/
# The socket directory is the lab's shared volume; it must exist before the volume is mounted
# so that Docker copies its owner and mode into a new volume.
RUN install -d -o www-data -g www-data -m 0755 /run/php
CMD ["php-fpm8.2", "--nodaemonize", "--fpm-config", "/etc/php/8.2/fpm/php-fpm.conf"]
