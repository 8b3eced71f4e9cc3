#!/bin/sh
# gslb-entrypoint: the container's entry point (POSIX sh, no bash in slim images).
#
#   (nothing) | -ARGS...          gslb serve [-ARGS...]
#   a gslb command [ARGS]         gslb COMMAND [ARGS]  (serve, probe, api, check, healthcheck, ...)
#   anything else                 run it as it is (e.g. sh)
#
# gslb itself reads GSLB_CONFIG (the config file, set to /etc/gslb/gslb.yaml by the image) and
# the GSLB_* overrides (GSLB_SERVER_LISTEN, GSLB_STATE_REDIS_URL, ...: docs/configuration.md).
set -eu

if [ $# -eq 0 ]; then
    set -- serve
fi
case "$1" in
    -h | --help | --version) exec gslb "$@" ;;
    -*) exec gslb serve "$@" ;;
    serve | probe | api | check | healthcheck | explain | config | drain | undrain | state | audit | token)
        exec gslb "$@"
        ;;
    *) exec "$@" ;;
esac
