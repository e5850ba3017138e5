#!/bin/sh
# Create the same accounts, with the same ids, in every labkit image. Lessons rely on these
# names and numbers agreeing between the Nginx and PHP-FPM containers, because a unix socket
# on the shared volume carries numeric ids, not names.
set -eu
# www-data (33:33) comes with Debian's base-passwd.
groupadd --gid 1000 ubuntu
useradd --uid 1000 --gid 1000 --create-home --shell /bin/bash ubuntu
groupadd --gid 1001 alice
useradd --uid 1001 --gid 1001 --create-home --shell /bin/bash alice
groupadd --gid 1002 bob
useradd --uid 1002 --gid 1002 --create-home --shell /bin/bash bob
# An ordinary local account that belongs to no web group: the "other" in a 0666 socket.
groupadd --gid 1003 mallory
useradd --uid 1003 --gid 1003 --create-home --shell /bin/bash mallory
