"""Several worker processes on one address and port (`--workers`): each binds its own socket with
SO_REUSEPORT, and a classic BPF program makes the kernel hand each datagram to a worker at
random. The kernel's own choice is a hash of the client's address and port, which leaves workers
idle when a few clients send most of the queries (a stub resolver with a fixed port, a load
generator, another DNS server relaying to this one)."""

from __future__ import annotations

import ctypes
import socket
import struct

SO_ATTACH_REUSEPORT_CBPF = 51  # Linux's value; Python does not export it
_INSTRUCTION = struct.Struct("=HBBI")  # struct sock_filter: code, jt, jf, k
_BPF_LD_W_ABS, _BPF_ALU_MOD_K, _BPF_RET_A = 0x20, 0x94, 0x16
_SKF_AD_RANDOM = 0xFFFFF000 + 56  # the ancillary load that yields a random 32-bit number


def share_port(sock: socket.socket) -> None:
    """Let the other workers bind the same address and port (before `bind`)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)


def spread_at_random(sock: socket.socket, workers: int) -> None:
    """After `bind`: the socket group picks socket `random % workers` for each datagram. While a
    worker is being restarted the index can point past the group; the kernel then falls back to
    its hash for that datagram. Raises OSError where the kernel has no such option."""
    program = b"".join((_INSTRUCTION.pack(_BPF_LD_W_ABS, 0, 0, _SKF_AD_RANDOM),
                        _INSTRUCTION.pack(_BPF_ALU_MOD_K, 0, 0, workers),
                        _INSTRUCTION.pack(_BPF_RET_A, 0, 0, 0)))
    code = ctypes.create_string_buffer(program, len(program))
    fprog = struct.pack("@HP", len(program) // _INSTRUCTION.size, ctypes.addressof(code))  # struct sock_fprog
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, fprog)
