"""The network-namespace lab: a real delegation, two gslb nodes behind BGP anycast, a resolver.

`python -m lab.netlab run` (what `bin/dev netlab` runs) builds it from scratch with `ip netns`,
runs the scenarios, prints their numbers and removes every namespace and process it made.
`topology` builds and tears down the lab, `stream` sends a steady query stream from inside a
namespace, `scenarios` drives the scenarios. Needs root, iproute2, knot, bird2, exabgp,
unbound, redis-server and dig (Debian packages; `bin/dev netlab` installs them).
"""
