# Nginx as Debian ships it, with snippets/fastcgi-php.conf and sites-available/default.
FROM debian:bookworm-slim
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
       nginx procps iproute2 curl libfcgi-bin \
    && rm -rf /var/lib/apt/lists/* \
    && ln -sf /dev/stdout /var/log/nginx/access.log \
    && ln -sf /dev/stderr /var/log/nginx/error.log
COPY common/users.sh /usr/local/sbin/labkit-users
RUN sh /usr/local/sbin/labkit-users
COPY www/ /var/www/html/
RUN install -d -o www-data -g www-data -m 0755 /run/php
STOPSIGNAL SIGQUIT
CMD ["nginx", "-g", "daemon off;"]
