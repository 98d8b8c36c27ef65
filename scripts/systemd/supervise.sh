#!/bin/sh
# A minimal process supervisor for `groupsync watch` where there is no systemd (a
# container, a plain VM): restarts it when it exits non-zero, waits 30 s in between,
# passes SIGTERM/SIGINT on and stops when watch stopped cleanly (exit 0).
#   scripts/systemd/supervise.sh --joined --send --on-new ./on-new.sh
# Extra arguments go to `groupsync watch`. GROUPSYNC_BIN overrides the command.
umask 077  # what the hooks and the shell create is private too, as with systemd's UMask=0077
bin="${GROUPSYNC_BIN:-groupsync}"
delay="${GROUPSYNC_RESTART_DELAY:-30}"
child=""
trap 'stopping=1; [ -n "$child" ] && kill -TERM "$child" 2>/dev/null' TERM INT
while :; do
    "$bin" watch "$@" &
    child=$!
    wait "$child"
    code=$?
    # `wait` returns early when a trapped signal arrives: wait for the child itself.
    while kill -0 "$child" 2>/dev/null; do wait "$child"; code=$?; done
    child=""
    if [ -n "$stopping" ] || [ "$code" -eq 0 ]; then
        exit "$code"
    fi
    echo "supervise: groupsync watch exited with $code; restarting in ${delay}s" >&2
    sleep "$delay" &
    wait $! 2>/dev/null
    [ -n "$stopping" ] && exit 0
done
