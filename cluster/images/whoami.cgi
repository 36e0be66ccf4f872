#!/bin/sh
# busybox httpd CGI for the cluster scenarios: answers with the source address the pod saw, so a
# test can tell a pod's own IP from a SNATed one. httpd listens on IPv6 and reports IPv4 peers as
# [::ffff:a.b.c.d]; print the plain address.
addr=$(echo "$REMOTE_ADDR" | sed -e 's/^\[//' -e 's/\]$//' -e 's/^::ffff://')
printf 'Content-Type: text/plain\r\n\r\n%s\n' "$addr"
