#!/usr/bin/env python3
"""The suite's upstream DNS server: answers like a recursor would for one zone it knows.

    upstream.py --listen ADDR --zone FILE

Names in the zone get its records (NODATA with the zone's SOA for another type, NXDOMAIN with
it for names it lacks); every other name is NXDOMAIN with the root's SOA, as a recursor would
answer for a name that does not exist. RA is set, AA is not. UDP and TCP on port 53.
"""
import argparse
import socketserver
import struct
import threading

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.zone

ROOT_SOA = dns.rrset.from_text(".", 10, "IN", "SOA",
                               "a.root-servers.net. nstld.verisign-grs.com. 1 1800 900 604800 10")


def answer(zone, wire):
    try:
        q = dns.message.from_wire(wire)
    except Exception:  # noqa: BLE001 - not DNS: no answer
        return None
    r = dns.message.make_response(q)
    r.flags |= dns.flags.RA
    if len(q.question) != 1:
        r.set_rcode(dns.rcode.FORMERR)
        return r.to_wire()
    name, rdtype = q.question[0].name, q.question[0].rdtype
    if not name.is_subdomain(zone.origin):
        r.set_rcode(dns.rcode.NXDOMAIN)
        r.authority.append(ROOT_SOA)
        return r.to_wire()
    soa = zone.find_rrset(zone.origin, dns.rdatatype.SOA)
    node = zone.get_node(name)
    if node is None:
        r.set_rcode(dns.rcode.NXDOMAIN)
        r.authority.append(soa)
        return r.to_wire()
    rds = node.get_rdataset(dns.rdataclass.IN, rdtype)
    if rds is None:
        r.authority.append(soa)
    else:
        rrset = dns.rrset.RRset(name, dns.rdataclass.IN, rdtype)
        rrset.update(rds)
        r.answer.append(rrset)
    return r.to_wire()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", required=True)
    ap.add_argument("--zone", required=True)
    opts = ap.parse_args()
    zone = dns.zone.from_file(opts.zone, relativize=False)

    class UDP(socketserver.BaseRequestHandler):
        def handle(self):
            data, sock = self.request
            out = answer(zone, data)
            if out:
                sock.sendto(out, self.client_address)

    class TCP(socketserver.BaseRequestHandler):
        def handle(self):
            f = self.request.makefile("rb")
            while True:
                head = f.read(2)
                if len(head) < 2:
                    return
                out = answer(zone, f.read(struct.unpack("!H", head)[0]))
                if not out:
                    return
                self.request.sendall(struct.pack("!H", len(out)) + out)

    class U(socketserver.ThreadingUDPServer):
        daemon_threads = True
        allow_reuse_address = True

    class T(socketserver.ThreadingTCPServer):
        daemon_threads = True
        allow_reuse_address = True

    servers = [U((opts.listen, 53), UDP), T((opts.listen, 53), TCP)]
    for s in servers[1:]:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    print(f"listening on {opts.listen}:53", flush=True)
    servers[0].serve_forever()


if __name__ == "__main__":
    main()
