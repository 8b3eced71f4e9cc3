#!/bin/sh
# Stand-in for `gslb healthcheck` (same contract): exit 0 when the node at $$1 answers its zone
# authoritatively, else exit 1 with one line saying why.
out=$$(dig +norec +time=1 +tries=1 @"$$1" gslb.example.com SOA 2>&1) || { echo "no answer from $$1"; exit 1; }
case "$$out" in
    *"status: NOERROR"*"flags: qr aa"*) exit 0 ;;
    *) echo "not an authoritative answer from $$1"; exit 1 ;;
esac
