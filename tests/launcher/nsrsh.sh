#!/usr/bin/env bash
# An rsh agent for the namespace "hosts" of netns_up.sh: `nsrsh.sh [ssh options] HOST CMD ARGS...` runs
# CMD inside HOST's network namespace (HOST is 10.<net>.0.<i>; NSRSH_PREFIX names the namespaces), with
# its own UTS namespace whose hostname is the namespace's name, as a separate machine would have.
# Arguments are passed through as they are (no re-splitting), unlike ssh.
set -euo pipefail
while [[ $1 == -* ]]; do shift; done
host=$1
shift
ns=${NSRSH_PREFIX:?set NSRSH_PREFIX}${host##*.}
exec ip netns exec "$ns" unshare --uts /bin/sh -c 'hostname "$0"; exec "$@"' "$ns" "$@"
