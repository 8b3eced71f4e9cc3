"""DNS numbers: record types, classes, rcodes and header bits, in one place.

Pure layer: standard library only. Every module that speaks DNS takes its constants from
here (RFC 1035, 2671/6891, 3596, 6895 and the IANA registries), so that no value is
defined twice.
"""

from __future__ import annotations

import enum

# record types
TYPE_A = 1
TYPE_NS = 2
TYPE_CNAME = 5
TYPE_SOA = 6
TYPE_PTR = 12
TYPE_HINFO = 13
TYPE_MX = 15
TYPE_TXT = 16
TYPE_AAAA = 28
TYPE_SRV = 33
TYPE_OPT = 41
TYPE_SSHFP = 44
TYPE_TLSA = 52
TYPE_HTTPS = 65
TYPE_IXFR = 251
TYPE_AXFR = 252
TYPE_ANY = 255
TYPE_CAA = 257

TYPES_BY_NAME = {
    "A": TYPE_A,
    "NS": TYPE_NS,
    "CNAME": TYPE_CNAME,
    "SOA": TYPE_SOA,
    "PTR": TYPE_PTR,
    "HINFO": TYPE_HINFO,
    "MX": TYPE_MX,
    "TXT": TYPE_TXT,
    "AAAA": TYPE_AAAA,
    "SRV": TYPE_SRV,
    "SSHFP": TYPE_SSHFP,
    "TLSA": TYPE_TLSA,
    "HTTPS": TYPE_HTTPS,
    "ANY": TYPE_ANY,
    "CAA": TYPE_CAA,
}

# classes
CLASS_IN = 1
CLASS_CH = 3
CLASS_ANY = 255

# header flag bits
QR = 0x8000
AA = 0x0400
TC = 0x0200
RD = 0x0100
RA = 0x0080
AD = 0x0020
CD = 0x0010
OPCODE_MASK = 0x7800

# EDNS
OPT_NSID = 3
OPT_ECS = 8
EDNS_DO = 0x8000


class Rcode(enum.IntEnum):
    NOERROR = 0
    FORMERR = 1
    SERVFAIL = 2
    NXDOMAIN = 3
    NOTIMP = 4
    REFUSED = 5
    BADVERS = 16  # extended: the upper 8 bits go into the OPT TTL
