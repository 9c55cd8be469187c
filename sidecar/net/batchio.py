"""Datagrams by the batch: one recvmmsg(2) reads up to `SLOTS` queries and one sendmmsg(2) sends
a loop turn's replies, where recvfrom/sendto cost a system call, a Python call and an address
tuple per datagram (docs/speed.md). Buffers are allocated once, and a packet-cache hit is written
over its query in the slot it came in (`DatagramBatch.reply_in_place`). Linux only, through
ctypes: `open` returns None elsewhere, and callers go datagram by datagram."""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import struct
import sys

from ..dns.wire import OUR_UDP_SIZE
from .pktinfo import Ancillary, reply_source

SLOTS = 64
SLOT_SIZE = 4096  # a bigger query is no query anyone sends: it arrives cut (MSG_TRUNC) and is dropped
NAME_SIZE = 28  # struct sockaddr_in6, the larger of the two
CONTROL_SIZE = 64  # room for one pktinfo control message either way
MSG_DONTWAIT = 0x40
MSG_TRUNC = 0x20
_HOSTS_KEPT = 4096  # sender addresses remembered as strings


class _IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class _MsgHdr(ctypes.Structure):
    _fields_ = [("name", ctypes.c_void_p), ("namelen", ctypes.c_uint32), ("iov", ctypes.c_void_p),
                ("iovlen", ctypes.c_size_t), ("control", ctypes.c_void_p), ("controllen", ctypes.c_size_t),
                ("flags", ctypes.c_int)]


class _MMsgHdr(ctypes.Structure):
    _fields_ = [("hdr", _MsgHdr), ("len", ctypes.c_uint)]


_HDR = ctypes.sizeof(_MMsgHdr)
_IOV = ctypes.sizeof(_IoVec)
_IOV_LEN_AT = _IoVec.len.offset
_CONTROLLEN_AT = _MsgHdr.controllen.offset
_FLAGS_AT = _MsgHdr.flags.offset
_LEN_AT = _MMsgHdr.len.offset
_SIZE = struct.Struct("@N")
_CMSG = struct.Struct("@Nii")  # struct cmsghdr: length, level, type; the data follows, aligned
_CMSG_ALIGN = ctypes.sizeof(ctypes.c_size_t)


class _HostNames(dict):
    """Sender address bytes -> text, as `recvfrom` spells it, made on first sight and bounded:
    a dict whose misses fill themselves, so `hosts` does one lookup per datagram and no call."""

    def __init__(self, family: int) -> None:
        super().__init__()
        self._family = family

    def __missing__(self, raw: bytes) -> str:
        if len(self) >= _HOSTS_KEPT:
            self.clear()
        host = self[raw] = socket.inet_ntop(self._family, raw)
        return host


def _libc_calls():
    """recvmmsg and sendmmsg from the C library, or None where there are none."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        recvmmsg, sendmmsg = libc.recvmmsg, libc.sendmmsg
    except (OSError, AttributeError):
        return None
    recvmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_void_p]
    sendmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]
    return recvmmsg, sendmmsg


assert OUR_UDP_SIZE <= SLOT_SIZE  # every reply fits a send slot
_CALLS = _libc_calls()
AVAILABLE = _CALLS is not None


class _Ring:
    """`SLOTS` message headers, each with its own data, address and control buffer."""

    def __init__(self, slot_size: int, namelen: int, control: bool) -> None:
        self.data = ctypes.create_string_buffer(SLOTS * slot_size)
        self.names = ctypes.create_string_buffer(SLOTS * NAME_SIZE)
        self.controls = ctypes.create_string_buffer(SLOTS * CONTROL_SIZE)
        self.iovs = (_IoVec * SLOTS)()
        self.headers = (_MMsgHdr * SLOTS)()
        for i in range(SLOTS):
            self.iovs[i].base = ctypes.addressof(self.data) + i * slot_size
            self.iovs[i].len = slot_size
            hdr = self.headers[i].hdr
            hdr.name = ctypes.addressof(self.names) + i * NAME_SIZE
            hdr.namelen = namelen
            hdr.iov = ctypes.addressof(self.iovs[i])
            hdr.iovlen = 1
            hdr.control = ctypes.addressof(self.controls) + i * CONTROL_SIZE
            hdr.controllen = CONTROL_SIZE if control else 0
        self.address = ctypes.addressof(self.headers)
        # What `receive` restores: the kernel rewrites the headers' lengths, and replies written
        # into the slots the iovecs' lengths.
        self.pristine = memoryview(bytes(self.headers))
        self.pristine_iovs = memoryview(bytes(self.iovs))
        self.data_view = memoryview(self.data).cast("B")
        self.names_view = memoryview(self.names).cast("B")
        self.controls_view = memoryview(self.controls).cast("B")
        self.headers_view = memoryview(self.headers).cast("B")
        self.iovs_view = memoryview(self.iovs).cast("B")
        # Each iovec's length field, as one size_t item: set by assignment, no struct call.
        self.iov_lengths = self.iovs_view.cast("N")[_IOV_LEN_AT // _SIZE.size :: _IOV // _SIZE.size]


def _header_fields(count: int) -> struct.Struct:
    """Each received message's flags and length, for `count` headers, in one unpack."""
    return struct.Struct("@" + f"{_FLAGS_AT}xi{_LEN_AT - _FLAGS_AT - 4}xI{_HDR - _LEN_AT - 4}x" * count)


_FIELDS = [_header_fields(count) for count in range(SLOTS + 1)]
# Where each slot's datagram starts: zipped with a batch's messages, which are fewer (strict=False).
_DATA_OFFSETS = range(0, SLOTS * SLOT_SIZE, SLOT_SIZE)


class DatagramBatch:
    """Batched reads and replies on one non-blocking UDP socket: `receive`, then `datagrams`,
    `senders` and `hosts` (lists in slot order), then `send` replies, now or after later receives.
    A datagram stays in its slot only until the next `receive`, so what a caller keeps is copied
    out (a sender is plain address bytes, kept as long as needed). On a wildcard address each
    reply leaves from the address its query was sent to (IP_PKTINFO / IPV6_PKTINFO)."""

    def __init__(self, sock: socket.socket, destinations: bool) -> None:
        assert AVAILABLE
        self._recvmmsg = _CALLS[0]
        self._fd = sock.fileno()
        self._v6 = sock.family == socket.AF_INET6
        self._namelen = NAME_SIZE if self._v6 else 16
        self._in = _Ring(SLOT_SIZE, self._namelen, destinations)
        self._out: _Ring | None = None  # made on the first `send`: a socket that only reads needs none
        self.destinations = destinations
        self._count = 0
        self._replied_in_place = False
        self._answered: ctypes.Array | None = None  # headers of the slots answered in place, when not all were
        self._hosts = _HostNames(sock.family)
        # Where each slot's sockaddr is, and its address within (sockaddr_in6 / sockaddr_in).
        first, last = (8, 24) if self._v6 else (4, 8)
        self._sender_slices = [slice(at, at + self._namelen) for at in range(0, SLOTS * NAME_SIZE, NAME_SIZE)]
        self._host_slices = [slice(at + first, at + last) for at in range(0, SLOTS * NAME_SIZE, NAME_SIZE)]

    @classmethod
    def open(cls, sock: socket.socket, destinations: bool) -> DatagramBatch | None:
        """A batch for `sock`, or None where the system calls are not there (not Linux)."""
        return cls(sock, destinations) if AVAILABLE else None

    def receive(self) -> int:
        """Read what is waiting, up to `SLOTS` datagrams; 0 when nothing is. Raises OSError for an
        error the socket reports (an ICMP error queued on it); the next call reads on."""
        if self._count:
            ring, used = self._in, self._count * _HDR
            ring.headers_view[:used] = ring.pristine[:used]
            if self._replied_in_place:
                used = self._count * _IOV
                ring.iovs_view[:used] = ring.pristine_iovs[:used]
                self._replied_in_place = False
            self._count = 0
        count = self._recvmmsg(self._fd, self._in.address, SLOTS, MSG_DONTWAIT, None)
        if count < 0:
            code = ctypes.get_errno()
            if code in (errno.EAGAIN, errno.EINTR):
                return 0
            raise OSError(code, os.strerror(code))
        self._count = count
        return count

    def datagrams(self) -> list[bytes | None]:
        """The datagrams of the last `receive`; None for one that was cut to fit its slot."""
        fields = _FIELDS[self._count].unpack_from(self._in.headers_view)
        data, flags, lengths = self._in.data, fields[::2], fields[1::2]
        if any(flags):  # rare: some message came with flags (MSG_TRUNC); look at each
            return [None if flag & MSG_TRUNC else data[at : at + length]
                    for at, flag, length in zip(_DATA_OFFSETS, flags, lengths, strict=False)]
        return [data[at : at + length] for at, length in zip(_DATA_OFFSETS, lengths, strict=False)]

    def queries(self) -> list[bytes] | None:
        """The datagrams of the last `receive` without their first two bytes (a query's ID), for
        `reply_in_place`; None when some came cut (they take `datagrams`)."""
        fields = _FIELDS[self._count].unpack_from(self._in.headers_view)
        if any(fields[::2]):
            return None
        data = self._in.data
        return [data[at + 2 : at + length] for at, length in zip(_DATA_OFFSETS, fields[1::2], strict=False)]

    def reply_in_place(self, tails: list[bytes | None]) -> tuple[list[int], int]:
        """Answer each datagram of the last `receive` that has a tail in `tails`: the tail is
        written after the datagram's first two bytes (a reply after its query's ID) in the very
        slot the datagram came in, and sent from there to its sender (from the address it was
        sent to, on a wildcard socket). No copy to a send slot, no address read in Python. The
        indices of the datagrams with none, which `datagrams`, `senders` and `reply_sources`
        still give as they came, and how many replies were dropped (see `send`)."""
        ring = self._in
        data_view, iov_lengths = ring.data_view, ring.iov_lengths
        answered, unanswered = [], []
        for i, at, tail in zip(range(self._count), _DATA_OFFSETS, tails, strict=False):
            if tail is None:
                unanswered.append(i)
                continue
            end = at + 2 + len(tail)
            data_view[at + 2 : end] = tail
            iov_lengths[i] = end - at
            answered.append(i)
        if not answered:
            return unanswered, 0
        self._replied_in_place = True
        if self.destinations:
            for i in answered:
                self._source_in_place(i)
        headers = ring.address if not unanswered else self._gather(answered)
        return unanswered, len(_send_queued(self._fd, headers, len(answered)))

    def _gather(self, answered: list[int]) -> int:
        """Copy the headers of the slots answered in place next to each other, apart from the
        receive ring's (which still describe the others); their address, for sendmmsg."""
        if self._answered is None:
            self._answered = (_MMsgHdr * SLOTS)()
        gathered, headers = memoryview(self._answered).cast("B"), self._in.headers_view
        for k, i in enumerate(answered):
            gathered[k * _HDR : (k + 1) * _HDR] = headers[i * _HDR : (i + 1) * _HDR]
        return ctypes.addressof(self._answered)

    def _source_in_place(self, i: int) -> None:
        """Write over datagram `i`'s IP_PKTINFO / IPV6_PKTINFO, as received, the one its reply
        is sent with (`reply_source`: from the address it was sent to, through no interface in
        particular), which is of the same size. The address it was sent to stays readable."""
        source = self.reply_source(i)
        if source:
            data = source[0][2]
            start = i * CONTROL_SIZE + _CMSG.size
            self._in.controls_view[start : start + len(data)] = data

    def senders(self) -> list[bytes]:
        """Each sender's address as the kernel gave it (a sockaddr), to send its reply to."""
        return list(map(self._in.names.__getitem__, self._sender_slices[: self._count]))

    def hosts(self) -> list[str]:
        """Each sender's address as text, as `recvfrom` would give it (port aside)."""
        known = self._hosts
        return [known[raw] for raw in map(self._in.names.raw.__getitem__, self._host_slices[: self._count])]

    def reply_sources(self) -> list[Ancillary]:
        """`reply_source` of each datagram of the last `receive`."""
        return list(map(self.reply_source, range(self._count)))

    def reply_source(self, i: int) -> Ancillary:
        """For a wildcard socket: the control data that makes a reply to datagram `i` leave from
        the address it was sent to (empty otherwise)."""
        if not self.destinations:
            return []
        if _SIZE.unpack_from(self._in.headers_view, i * _HDR + _CONTROLLEN_AT)[0] < _CMSG.size:
            return []
        start = i * CONTROL_SIZE
        length, level, kind = _CMSG.unpack_from(self._in.controls_view, start)
        return reply_source([(level, kind, self._in.controls[start + _CMSG.size : start + length])])

    def send(self, replies: list[tuple[bytes, Ancillary | None, bytes]]) -> int:
        """Send each reply (to a sender from `senders`, from the address `source` names on a
        wildcard socket); how many were dropped, as the network may drop any datagram (clients
        ask again). Each reply fits a slot: UDP replies never exceed `OUR_UDP_SIZE`."""
        if self._out is None:
            self._out = _Ring(SLOT_SIZE, self._namelen, False)
        if len(replies) <= SLOTS:
            return self._send_slots(replies)
        return sum(self._send_slots(replies[first : first + SLOTS]) for first in range(0, len(replies), SLOTS))

    def _send_slots(self, replies: list[tuple[bytes, Ancillary | None, bytes]]) -> int:
        out, pack = self._out, _SIZE.pack_into
        data_view, iov_lengths, names_view = out.data_view, out.iov_lengths, out.names_view
        for k, at, name, (sender, _, data) in zip(range(SLOTS), _DATA_OFFSETS, self._sender_slices, replies,
                                                  strict=False):
            size = len(data)
            data_view[at : at + size] = data
            iov_lengths[k] = size
            names_view[name] = sender
        if self.destinations:
            for k, (_, source, _) in enumerate(replies):
                pack(out.headers_view, k * _HDR + _CONTROLLEN_AT, self._control(k, source))
        return self._flush(len(replies))

    def _control(self, k: int, source: Ancillary | None) -> int:
        """Write `source` (one control message, or none) into send slot `k`; its length."""
        if not source:
            return 0
        level, kind, data = source[0]
        start = k * CONTROL_SIZE
        _CMSG.pack_into(self._out.controls_view, start, _CMSG.size + len(data), level, kind)
        self._out.controls_view[start + _CMSG.size : start + _CMSG.size + len(data)] = data
        return _CMSG.size + -(-len(data) // _CMSG_ALIGN) * _CMSG_ALIGN

    def _flush(self, queued: int) -> int:
        return len(_send_queued(self._fd, self._out.address, queued))


def _send_queued(fd: int, headers: int, count: int) -> list[tuple[int, int]]:
    """sendmmsg the first `count` message headers at address `headers`; the (index, errno) of
    each one not sent. sendmmsg stops at the first message the kernel refuses: with its buffer
    full the rest fail too, any other error costs that one message only."""
    sendmmsg = _CALLS[1]
    failed: list[tuple[int, int]] = []
    start = 0
    while start < count:
        sent = sendmmsg(fd, headers + start * _HDR, count - start, MSG_DONTWAIT)
        if sent > 0:
            start += sent
            continue
        code = ctypes.get_errno()
        if code in (errno.EAGAIN, errno.ENOBUFS):
            failed.extend((i, code) for i in range(start, count))
            break
        failed.append((start, code))
        start += 1
    return failed
