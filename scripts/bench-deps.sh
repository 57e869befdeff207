#!/usr/bin/env bash
# Installs what `make bench` needs beyond the build: the Debian 12
# etcd-server package, the baseline of the cluster benchmark. As root it
# runs apt-get; otherwise it prints the exact command and fails.
exec "$(dirname "$0")/deps.sh" etcd-server
