"""Zonefiles and hosts files watched on disk, through the running server: atomic saves, in-place
writes, new files in a watched directory, broken files (last good keeps serving), vanished files.
The last test drives the loader in-process, where the garbage collector's state can be seen."""

import gc
import os
import signal
import time

import dns.flags
import dns.rcode
import pytest
from dnslib import QTYPE

from sidecar.api import Query
from sidecar.sources.files import FileSource
from sidecar.zone.store import Store
from tests.helpers.process import wait_for

ZONE = """$ORIGIN live.test.
$TTL 60
@ SOA ns admin 1 3600 600 86400 30
web A {address}
"""


def address_of(server, name: str) -> str | None:
    reply = server.query(name)
    return reply.answer[0][0].to_text() if reply.rcode() == dns.rcode.NOERROR and reply.answer else None


@pytest.fixture
def zonedir(tmp_path):
    directory = tmp_path / "zones"
    directory.mkdir()
    (directory / "live.test.zone").write_text(ZONE.format(address="192.0.2.1"))
    return directory


def atomic_save(path, text):
    """What vim, VS Code and most editors do: write a temp file, then rename it over."""
    tmp = path.with_name("." + path.name + ".swp")
    tmp.write_text(text)
    os.replace(tmp, path)


def test_atomic_save_is_picked_up(sidecar, zonedir):
    server = sidecar("--zonefile", zonedir, "--poll-interval", "30")  # events only: polling too slow to matter
    assert address_of(server, "web.live.test") == "192.0.2.1"
    atomic_save(zonedir / "live.test.zone", ZONE.format(address="192.0.2.2"))
    wait_for(lambda: address_of(server, "web.live.test") == "192.0.2.2", what="reload after atomic save")


def test_in_place_write_is_picked_up(sidecar, zonedir):
    server = sidecar("--zonefile", zonedir / "live.test.zone", "--poll-interval", "30")
    assert address_of(server, "web.live.test") == "192.0.2.1"
    with open(zonedir / "live.test.zone", "r+") as handle:  # same inode, as through a bind mount
        handle.write(ZONE.format(address="192.0.2.3"))
    wait_for(lambda: address_of(server, "web.live.test") == "192.0.2.3", what="reload after in-place write")


def test_polling_catches_what_events_miss(sidecar, tmp_path, zonedir):
    # A hosts file in a directory that is not being written through this process's view still
    # changes mtime/size: the poll alone must notice (a short interval keeps the test quick).
    hosts = tmp_path / "hosts"
    hosts.write_text("192.0.2.40 polled.test\n")
    server = sidecar("--hosts", hosts, "--poll-interval", "0.2")
    assert address_of(server, "polled.test") == "192.0.2.40"
    hosts.write_text("192.0.2.41 polled.test\n")
    wait_for(lambda: address_of(server, "polled.test") == "192.0.2.41", what="reload by polling")


def test_new_file_in_watched_directory_is_loaded(sidecar, zonedir):
    server = sidecar("--zonefile", zonedir)
    assert address_of(server, "web.other.test") is None  # not ours yet: relayed, and no upstream answers
    atomic_save(zonedir / "other.test.zone", "web 60 A 192.0.2.50\n")
    wait_for(lambda: address_of(server, "web.other.test") == "192.0.2.50", what="new zonefile loaded")


def test_broken_zonefile_keeps_last_good_and_logs_file_line(sidecar, zonedir):
    server = sidecar("--zonefile", zonedir)
    path = zonedir / "live.test.zone"
    atomic_save(path, ZONE.format(address="192.0.2.1") + "broken A 300.1.1.1\n")
    wait_for(lambda: f"{path}:5: bad A data '300.1.1.1'" in server.log_text(), what="error logged")
    assert "last good version keeps serving" in server.log_text()
    assert address_of(server, "web.live.test") == "192.0.2.1"
    atomic_save(path, ZONE.format(address="192.0.2.9"))  # fixed: served again
    wait_for(lambda: address_of(server, "web.live.test") == "192.0.2.9", what="fixed file reloaded")


def test_vanished_file_keeps_its_records_until_it_returns(sidecar, zonedir):
    server = sidecar("--zonefile", zonedir)
    path = zonedir / "live.test.zone"
    path.unlink()
    wait_for(lambda: "gone or not a regular file; its last records keep serving" in server.log_text(),
             what="warning for the vanished file")
    assert address_of(server, "web.live.test") == "192.0.2.1"
    path.write_text(ZONE.format(address="192.0.2.7"))
    wait_for(lambda: address_of(server, "web.live.test") == "192.0.2.7", what="file back")


def test_file_replaced_by_a_directory_keeps_last_records(sidecar, zonedir):
    path = zonedir / "live.test.zone"
    server = sidecar("--zonefile", path)
    path.unlink()
    path.mkdir()
    wait_for(lambda: "gone or not a regular file" in server.log_text(), what="warning")
    assert address_of(server, "web.live.test") == "192.0.2.1"
    assert server.proc.poll() is None


def test_broken_file_at_start_is_logged_and_the_rest_serves(sidecar, zonedir):
    (zonedir / "bad.test.zone").write_bytes(b"ok A 192.0.2.1\n\xff\xfe junk\n")
    server = sidecar("--zonefile", zonedir)
    wait_for(lambda: "bad.test.zone:2: not UTF-8 text" in server.log_text(), what="encoding error logged")
    assert address_of(server, "web.live.test") == "192.0.2.1"


def test_truncated_file_keeps_its_records_and_a_comment_clears_them(sidecar, zonedir):
    server = sidecar("--zonefile", zonedir)
    path = zonedir / "live.test.zone"
    path.write_text("")
    wait_for(lambda: f"{path}: empty; its last records keep serving" in server.log_text(), what="warning")
    assert address_of(server, "web.live.test") == "192.0.2.1"
    path.write_text("; nothing here on purpose\n")
    wait_for(lambda: address_of(server, "web.live.test") is None, what="records cleared")


def test_sighup_rereads_files_that_look_unchanged(sidecar, zonedir):
    server = sidecar("--zonefile", zonedir, "--poll-interval", "0.2")
    watched = zonedir / "live.test.zone"
    before = watched.stat()
    watched.write_text(ZONE.format(address="192.0.2.8"))  # same size as .1
    os.utime(watched, ns=(before.st_atime_ns, before.st_mtime_ns))  # as `cp -p` or rsync -t would
    time.sleep(1)  # several polls and the inotify event: the stamp is the same, so nothing reloads
    assert address_of(server, "web.live.test") == "192.0.2.1"
    server.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: address_of(server, "web.live.test") == "192.0.2.8", what="reload on SIGHUP")
    assert "reload requested" in server.log_text()


def test_a_forwarded_name_added_to_a_zonefile_is_answered_locally(sidecar, dnsmasq, zonedir):
    """The server remembers which questions are not local; a zone change must make it forget."""
    upstream = dnsmasq("127.0.0.2", ["--address=/moved.test/198.51.100.9"], ttl=0)
    server = sidecar("--zonefile", zonedir, "--upstream", f"{upstream.host}:{upstream.port}")
    for _ in range(3):  # relayed each time: TTL 0 keeps it out of every cache
        assert address_of(server, "web.moved.test") == "198.51.100.9"
    atomic_save(zonedir / "moved.test.zone", ZONE.replace("live.test.", "moved.test.").format(address="192.0.2.9"))
    wait_for(lambda: address_of(server, "web.moved.test") == "192.0.2.9", what="the new local name answered")
    assert server.query("web.moved.test").flags & dns.flags.AA


def test_loads_good_or_broken_leave_the_garbage_collector_running(zonedir):
    """Loading pauses the collector; a file that loads and one that does not parse must each
    resume it, or the process would never reclaim cyclic garbage again."""
    (zonedir / "broken.test.zone").write_text("web A 192.0.2.999\n")
    store = Store()
    errors = FileSource(store, [zonedir], []).load()
    assert gc.isenabled()
    assert [(error.line, "bad A data" in error.reason) for error in errors] == [(1, True)]
    assert str(store.zone.lookup(Query("web.live.test", QTYPE.A)).answer[0].rdata) == "192.0.2.1"


def test_an_included_file_is_watched_with_its_zone(sidecar, zonedir):
    """`$INCLUDE` is read relative to the including file; a change to the included file alone
    (in a subdirectory, seen by its own inotify watch, not the slow poll) reloads the zone."""
    (zonedir / "parts").mkdir()
    (zonedir / "parts" / "hosts.inc").write_text("inc A 192.0.2.60\n")
    atomic_save(zonedir / "live.test.zone", ZONE.format(address="192.0.2.1") + "$INCLUDE parts/hosts.inc\n")
    server = sidecar("--zonefile", zonedir, "--poll-interval", "30")
    wait_for(lambda: address_of(server, "inc.live.test") == "192.0.2.60", what="the included record")
    atomic_save(zonedir / "parts" / "hosts.inc", "inc A 192.0.2.61\n")
    wait_for(lambda: address_of(server, "inc.live.test") == "192.0.2.61", what="reload after the include changed")


def test_an_include_outside_the_mounted_tree_is_refused(sidecar, tmp_path, zonedir):
    (tmp_path / "secret.inc").write_text("leak A 192.0.2.66\n")
    path = zonedir / "live.test.zone"
    atomic_save(path, ZONE.format(address="192.0.2.1") + "$INCLUDE ../secret.inc\n")
    server = sidecar("--zonefile", zonedir)
    wait_for(lambda: f"{path}:5: ../secret.inc: outside {zonedir.resolve()}; not read" in server.log_text(),
             what="the refusal logged")
    assert address_of(server, "leak.live.test") is None


def test_cname_beside_other_data_keeps_the_last_good_zone(sidecar, zonedir):
    server = sidecar("--zonefile", zonedir)
    path = zonedir / "live.test.zone"
    atomic_save(path, ZONE.format(address="192.0.2.8") + "web CNAME elsewhere.test.\n")
    wait_for(lambda: f"{path}:5: web.live.test.: CNAME and other data" in server.log_text(), what="error logged")
    assert address_of(server, "web.live.test") == "192.0.2.1"


def test_rrset_ttls_made_one_and_out_of_zone_data_skipped_with_warnings(sidecar, zonedir):
    path = zonedir / "live.test.zone"
    atomic_save(path, ZONE.format(address="192.0.2.1") + "web 300 A 192.0.2.2\nstray.example. A 192.0.2.3\n")
    server = sidecar("--zonefile", zonedir)
    wait_for(lambda: f"{path}:5: web.live.test.: TTL set to prior TTL (60)" in server.log_text(), what="TTL warning")
    assert f"{path}:6: ignoring out-of-zone data (stray.example.)" in server.log_text()
    reply = server.query("web.live.test")
    assert {rrset.ttl for rrset in reply.answer} == {60} and len(reply.answer[0]) == 2
