<?php
// Which account, pool and SAPI answered this request.
// The pool comes from the worker's process title ("php-fpm: pool www"), not fpm_get_status():
// that function can crash a worker that runs while a sibling is still starting
// (php/php-src#18595, #19974), which a freshly started lab hits now and then.
$user = posix_getpwuid(posix_geteuid());
$group = posix_getgrgid(posix_getegid());
$title = (string) @file_get_contents('/proc/self/cmdline');
// The title is padded with NUL bytes up to the length of the original command line.
$pool = preg_match('/pool ([A-Za-z0-9_.-]+)/', $title, $found) ? $found[1] : 'unknown';
header('Content-Type: text/plain');
printf("user=%s\n", $user['name']);
printf("group=%s\n", $group['name']);
printf("pool=%s\n", $pool);
printf("sapi=%s\n", PHP_SAPI);
printf("php=%s\n", PHP_MAJOR_VERSION . '.' . PHP_MINOR_VERSION);
