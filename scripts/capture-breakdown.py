#!/usr/bin/env python3
"""Splits a site uplink capture (tests/fleet.rs with POLLEN_E2E_CAPTURE=FILE,
site0's router interface) into bytes by direction, remote end (the seeder's
subnet x.y.1.z, or another site) and packet kind (TCP payload >= 1000 bytes:
data; 0: ACK; else small frames), as multiples of the release size.

Usage: capture-breakdown.py FILE RELEASE_BYTES   (needs tcpdump)
"""
import collections
import re
import subprocess
import sys


def main():
    path, size = sys.argv[1], float(sys.argv[2])
    out = subprocess.run(["tcpdump", "-r", path, "-nn", "-e", "-q"],
                         capture_output=True, text=True, check=True).stdout
    line = re.compile(r"length (\d+): (\d+\.\d+\.\d+\.\d+)\.\d+ > (\d+\.\d+\.\d+\.\d+)\.\d+: tcp (\d+)")
    site0 = lambda ip: ip.split(".")[2] == "100"
    nbytes, packets = collections.Counter(), collections.Counter()
    for text in out.splitlines():
        m = line.search(text)
        if not m:
            continue
        wire, src, dst, payload = int(m[1]), m[2], m[3], int(m[4])
        inbound = site0(dst) and not site0(src)
        other = src if inbound else dst
        key = ("in" if inbound else "out",
               "seeder" if other.split(".")[2] == "1" else "other site",
               "data" if payload >= 1000 else ("ack" if payload == 0 else "small"))
        nbytes[key] += wire
        packets[key] += 1
    total = collections.Counter()
    for key in sorted(nbytes):
        print("%-4s %-10s %-5s %8d packets %8.4f x F" % (*key, packets[key], nbytes[key] / size))
        total[key[0]] += nbytes[key]
    for d, b in sorted(total.items()):
        print("%s total %.4f x F" % (d, b / size))


if __name__ == "__main__":
    main()
