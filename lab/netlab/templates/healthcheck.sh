#!/bin/sh
# ExaBGP's healthcheck for ${name}: every ${interval_s} s run the health command; ${rise} passes
# announce, ${fall} failures (or the file ${disable}) withdraw. Transitions go to ${work}/${name}.health.log.
exec /usr/bin/exabgp-healthcheck --no-syslog --name ${name} \
    --interval ${interval_s} --fast-interval ${interval_s} --timeout 2 --rise ${rise} --fall ${fall} \
    --cmd '${health_command}' \
    --disable ${disable} --withdraw-on-down \
    --ip ${anycast1}/32 --ip ${anycast2}/32 --no-ip-setup --up-metric ${med} \
    --execute 'echo "$$(date +%s.%N) $$STATE" >> ${work}/${name}.health.log'
