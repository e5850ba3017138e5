<?php
// Which account, pool and SAPI answered this request.
$user = posix_getpwuid(posix_geteuid());
$group = posix_getgrgid(posix_getegid());
$status = function_exists('fpm_get_status') ? fpm_get_status() : null;
header('Content-Type: text/plain');
printf("user=%s\n", $user['name']);
printf("group=%s\n", $group['name']);
printf("pool=%s\n", $status ? $status['pool'] : 'unknown');
printf("sapi=%s\n", PHP_SAPI);
printf("php=%s\n", PHP_MAJOR_VERSION . '.' . PHP_MINOR_VERSION);
