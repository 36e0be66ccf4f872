#!/bin/sh
# busybox httpd CGI for the cluster scenarios: answers with the source address the pod saw, so a
# test can tell a pod's own IP from a SNATed one.
printf 'Content-Type: text/plain\r\n\r\n%s\n' "$REMOTE_ADDR"
