#!/usr/bin/env python3
"""Starts a program as runc starts a Kubernetes container whose securityContext is the coredns
Deployment's: runAsUser/runAsGroup 65532, capabilities {add: [NET_BIND_SERVICE], drop: [ALL]},
allowPrivilegeEscalation: false. In order: chroot into the container's root filesystem; reduce
the bounding set to CAP_NET_BIND_SERVICE; switch uid and gid keeping only that capability in the
permitted and effective sets (no inheritable or ambient ones: containerd gives a non-root
container none, so the binary's own file capability is what keeps it across exec); set
no_new_privs; exec with exactly the given environment.

    runas.py ROOT UID GID [NAME=VALUE ...] -- PROGRAM [ARGS ...]

Linux, as root; standard library only (ctypes for prctl and capset).
"""
import ctypes
import os
import sys

PR_SET_KEEPCAPS = 8
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
CAP_NET_BIND_SERVICE = 10
LINUX_CAPABILITY_VERSION_3 = 0x20080522

libc = ctypes.CDLL(None, use_errno=True)


class CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def check(ret, what):
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def main():
    root, uid, gid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    sep = sys.argv.index("--")
    env = dict(kv.split("=", 1) for kv in sys.argv[4:sep])
    argv = sys.argv[sep + 1:]
    with open("/proc/sys/kernel/cap_last_cap") as f:
        last_cap = int(f.read())
    os.chroot(root)
    os.chdir("/")
    for cap in range(last_cap + 1):
        if cap != CAP_NET_BIND_SERVICE:
            check(libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), f"drop capability {cap}")
    check(libc.prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0), "keepcaps")
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    header = CapHeader(LINUX_CAPABILITY_VERSION_3, 0)
    data = (CapData * 2)()
    data[0].effective = data[0].permitted = 1 << CAP_NET_BIND_SERVICE
    check(libc.capset(ctypes.byref(header), data), "capset")
    check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    os.execve(argv[0], argv, env)


if __name__ == "__main__":
    main()
