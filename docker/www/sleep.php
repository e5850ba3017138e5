<?php
// Hold a worker for ?s= seconds (at most 30), to fill a pool or trip a timeout.
$seconds = min(30, max(0, (float) ($_GET['s'] ?? 1)));
usleep((int) ($seconds * 1000000));
header('Content-Type: text/plain');
printf("slept=%.2f\n", $seconds);
