#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# Integration test: provd-boardsim on real ptys, driven by boardsim-host (the host library + OpenSSL).
#
# Covers: full sessions (HELLO..RESULT) verified on the host side, state files,
# LOCK, faults (oversize, badsig, silent, drop), the control FIFO (add, remove,
# replug, swap), hangup on pty close, station open/close without hangup,
# restart with --state-dir, --seed determinism, --cycles, SIGTERM cleanup,
# the link deleted before its pty is hung up.

import ctypes
import hashlib
import os
import queue
import re
import select
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time

BUILD = os.environ.get('PROVD_BUILD_DIR', '')
SIM = os.path.join(BUILD, 'station-proto', 'boardsim', 'provd-boardsim')
HOST = os.path.join(BUILD, 'station-proto', 'boardsim', 'boardsim-host')
WAIT = 20.0     # generous upper bound for any single event; never a timing assertion


class Fail(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Fail(what)


class Sim:
    """A running provd-boardsim with its stdout read line by line."""

    def __init__(self, tmp, *args):
        self.dir = tmp
        self.lines = queue.Queue()
        self.seen = []
        self.proc = subprocess.Popen([SIM, '--dir', tmp] + list(args), stdout=subprocess.PIPE,
                                     stderr=sys.stderr, text=True, bufsize=1)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line.rstrip('\n'))
        self.lines.put(None)

    def expect(self, pattern, timeout=WAIT):
        """Next line matching @pattern (earlier non-matching lines are kept in self.seen)."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Fail('no line matching %r; seen: %s' % (pattern, self.seen[-20:]))
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise Fail('simulator exited while waiting for %r' % pattern)
            self.seen.append(line)
            m = rx.fullmatch(line)
            if m:
                return m

    def control(self, line):
        fd = os.open(os.path.join(self.dir, 'control'), os.O_WRONLY | os.O_NONBLOCK)
        try:
            os.write(fd, (line + '\n').encode())
        finally:
            os.close(fd)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def plugs(sim, n):
    out = {}
    for _ in range(n):
        m = sim.expect(r'plug (board-\d+) (/dev/pts/\d+) serial=([0-9A-F]{18})')
        out[m.group(1)] = (m.group(2), m.group(3))
    return out


def host(*args):
    """Runs boardsim-host; returns ({path: ('ok', fields) | ('fail', fields)}, exit code)."""
    p = subprocess.run([HOST] + list(args), stdout=subprocess.PIPE, stderr=sys.stderr, text=True,
                       timeout=120)
    res = {}
    for line in p.stdout.splitlines():
        parts = line.split()
        if parts and parts[0] in ('ok', 'fail'):
            fields = dict(kv.split('=', 1) for kv in parts[2:] if '=' in kv)
            res[parts[1]] = (parts[0], fields)
    return res, p.returncode


def read(path, mode='rb'):
    with open(path, mode) as f:
        return f.read()


def pubkey_of_pem(path):
    der = subprocess.run(['openssl', 'pkey', '-in', path, '-pubout', '-outform', 'DER'],
                         stdout=subprocess.PIPE, check=True).stdout
    return der[-65:].hex().upper()


def test_main(tmp):
    links = os.path.join(tmp, 'links')
    state = os.path.join(tmp, 'state')
    os.mkdir(links)
    pub3 = None
    sim = Sim(links, '--count', '8', '--state-dir', state, '--seed', 'integration',
              '--fault', 'oversize@4', '--fault', 'badsig@5', '--fault', 'silent@6', '--fault', 'drop:csr@7')
    try:
        boards = plugs(sim, 8)
        sim.expect(r'ready 8')
        for name, (pts, serial) in boards.items():
            link = os.path.join(links, name)
            check(os.readlink(link) == pts, '%s points to %s' % (link, pts))
            check(stat.S_ISCHR(os.stat(link).st_mode), '%s is a character device' % link)
        check(stat.S_ISFIFO(os.stat(os.path.join(links, 'control')).st_mode), 'control FIFO')

        # Full sessions, verified by the host: board 0 is also locked.
        p = lambda i: os.path.join(links, 'board-%03d' % i)
        res, rc = host('--lock', p(0))
        check(rc == 0 and res[p(0)][0] == 'ok', 'board-000 session: %s' % res)
        # The silent board alone with a short timeout (it never answers, so it fails however fast the
        # machine is); the others with the default timeout, so a slow machine does not fail them.
        res, rc = host('--timeout-ms', '400', '--retries', '1', p(6))
        check(rc != 0, 'host reports the silent board')
        check(set(res) == {p(6)}, 'one result for the silent board: %s' % res)
        res6 = res[p(6)]
        res, rc = host(*[p(i) for i in (1, 2, 3, 4, 5, 7)])
        check(rc != 0, 'host reports the faulty boards')
        res[p(6)] = res6
        for i in (1, 2, 3):
            check(res[p(i)][0] == 'ok', 'board %d ok: %s' % (i, res[p(i)]))
            check(res[p(i)][1]['serial'] == boards['board-%03d' % i][1], 'IDENT serial = plug serial')
        pub3 = res[p(3)][1]['pubkey']
        check(res[p(4)][0] == 'fail' and res[p(4)][1] == {'step': 'csr', 'reason': 'oversize'},
              'oversize: %s' % (res[p(4)],))
        check(res[p(5)][0] == 'fail' and res[p(5)][1] == {'step': 'csr', 'reason': 'badsig'},
              'badsig: %s' % (res[p(5)],))
        check(res[p(6)][0] == 'fail' and res[p(6)][1]['step'] == 'hello' and res[p(6)][1]['reason'] == 'timeout',
              'silent: %s' % (res[p(6)],))
        check(res[p(7)][0] == 'fail' and res[p(7)][1]['reason'] == 'hangup', 'drop:csr: %s' % (res[p(7)],))
        sim.expect(r'result board-000 provisioned serial=%s' % boards['board-000'][1])
        sim.expect(r'fault board-007 drop after=csr')
        sim.expect(r'unplug board-007 reason=drop')
        check(not os.path.lexists(p(7)), 'a dropped board leaves an empty slot')
        sim.control('replug 7')
        m = sim.expect(r'plug board-007 (/dev/pts/\d+) serial=%s' % boards['board-007'][1])
        check(os.readlink(p(7)) == m.group(1), 'board-007 plugged back')
        res, rc = host(p(7))            # the drop happens once per board
        check(rc == 0 and res[p(7)][0] == 'ok', 'board-007 after the drop: %s' % res)

        # What board 0 holds.
        res0 = host('--new-key', 'no', p(0))[0][p(0)]
        check(res0[0] == 'fail' and res0[1] == {'step': 'cert', 'reason': 'board-error', 'code': '6'},
              'a locked board refuses PUT_CERT with SP_ERR_LOCKED: %s' % (res0,))
        b0 = os.path.join(state, 'board-000')
        check(read(os.path.join(b0, 'serial'), 'r').strip() == boards['board-000'][1], 'serial file')
        check(read(os.path.join(b0, 'locked'), 'r').strip() == '1', 'locked flag')
        check(stat.S_IMODE(os.stat(os.path.join(b0, 'key.pem')).st_mode) == 0o600, 'key.pem is 0600')
        cfg = read(os.path.join(b0, 'config'), 'r').splitlines()
        check('thing_name=%s' % boards['board-000'][1] in cfg, 'config thing_name: %s' % cfg)
        check('wifi_psk=correct horse\\x5cbattery' in cfg, 'config wifi_psk (escaped): %s' % cfg)
        root = read(os.path.join(b0, 'root_pubkey'))
        check(len(root) == 65 and root[0] == 4, 'root_pubkey')
        check(len(read(os.path.join(b0, 'signer.der'))) > 100, 'signer.der')
        b1 = os.path.join(state, 'board-001')
        ok1 = host(p(1))[0][p(1)]
        check(ok1[0] == 'ok', 'board-001 second session: %s' % (ok1,))
        sha = hashlib.sha256(read(os.path.join(b1, 'device.der'))).hexdigest().upper()
        check(sha == ok1[1]['cert_sha256'], 'device.der is the certificate the host issued')
        check(pubkey_of_pem(os.path.join(b1, 'key.pem')) == ok1[1]['pubkey'], 'key.pem holds the CSR key')
        check(read(os.path.join(b1, 'locked'), 'r').strip() == '0', 'board-001 not locked')
        pub1 = ok1[1]['pubkey']

        # A station opening and closing the port is no hangup.
        for _ in range(3):
            fd = os.open(p(3), os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
            os.close(fd)
        res, rc = host(p(3))
        check(rc == 0, 'board-003 after open/close cycles: %s' % res)

        # Hotplug through the FIFO.
        sim.control('add 2')
        added = plugs(sim, 2)
        check(set(added) == {'board-008', 'board-009'}, 'added boards: %s' % added)
        res, rc = host(p(8))
        check(rc == 0, 'board-008 session: %s' % res)
        sim.control('remove 8')
        sim.expect(r'unplug board-008 reason=remove')
        check(not os.path.lexists(p(8)), 'symlink of a removed board is gone')
        sim.control('remove 99')
        sim.expect(r'error control no-such-board 99')
        sim.control('frobnicate')
        sim.expect(r'error control syntax')

        # Closing the pty master is a hangup for the station.
        fd = os.open(p(1), os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        try:
            sim.control('replug 1')
            sim.expect(r'unplug board-001 reason=replug')
            m = sim.expect(r'plug board-001 (/dev/pts/\d+) serial=(\w+)')
            check(m.group(2) == boards['board-001'][1], 'replug keeps the identity')
            check(os.readlink(p(1)) == m.group(1), 'symlink re-pointed')
            po = select.poll()
            po.register(fd, select.POLLIN)
            ev = po.poll(WAIT * 1000)
            check(ev and ev[0][1] & (select.POLLHUP | select.POLLERR), 'POLLHUP on the old slave: %s' % ev)
            try:
                data = os.read(fd, 16)
                check(data == b'', 'read after hangup: %r' % data)
            except OSError as e:
                check(e.errno == 5, 'EIO after hangup: %s' % e)
        finally:
            os.close(fd)
        res, rc = host('--new-key', 'no', p(1))
        check(rc == 0 and res[p(1)][1]['pubkey'] == pub1, 'replugged board keeps its key: %s' % res)

        sim.control('swap 2')
        sim.expect(r'unplug board-002 reason=swap')
        m = sim.expect(r'plug board-002 (/dev/pts/\d+) serial=(\w+)')
        check(m.group(2) != boards['board-002'][1], 'swap brings a new identity')
        swapped = m.group(2)
        check(read(os.path.join(state, 'board-002', 'serial'), 'r').strip() == swapped, 'swap rewrote the state')
        check(not os.path.exists(os.path.join(state, 'board-002', 'device.der')), 'swap wiped the old cert')
        sim.control('status')
        sim.expect(r'status slots=9 plugged=9 identities=\d+ results=\d+')
    finally:
        rc = sim.stop()
    check(rc == 0, 'SIGTERM exit code %s' % rc)
    check(sorted(os.listdir(links)) == [], 'links dir empty after SIGTERM: %s' % os.listdir(links))

    # Restart on the same state: same boards, same keys.
    sim = Sim(links, '--count', '3', '--state-dir', state, '--seed', 'integration')
    try:
        again = plugs(sim, 3)
        check(again['board-000'][1] == boards['board-000'][1], 'state keeps the serial')
        check(again['board-002'][1] == swapped, 'state keeps the swapped board')
        res, rc = host('--new-key', 'no', p(1))
        check(rc == 0 and res[p(1)][1]['pubkey'] == pub1, 'restarted board keeps its key: %s' % res)
    finally:
        check(sim.stop() == 0, 'exit 0')

    # The seed alone gives the same boards (no state).
    links2 = os.path.join(tmp, 'links2')
    os.mkdir(links2)
    sim = Sim(links2, '--count', '4', '--seed', 'integration')
    try:
        fresh = plugs(sim, 4)
        for i in range(4):
            n = 'board-%03d' % i
            check(fresh[n][1] == boards[n][1], 'seeded serial of %s' % n)
        q = os.path.join(links2, 'board-003')
        res, rc = host(q)
        check(rc == 0 and res[q][1]['pubkey'] == pub3, 'seeded key: %s' % res)
    finally:
        check(sim.stop() == 0, 'exit 0')


def test_cycles(tmp):
    links = os.path.join(tmp, 'cycles')
    os.mkdir(links)
    sim = Sim(links, '--count', '2', '--cycles', '3', '--exit-when-done')
    try:
        plugs(sim, 2)
        sim.expect(r'ready 2')
        res = subprocess.run([HOST, '--loop', '6', os.path.join(links, 'board-000'), os.path.join(links, 'board-001')],
                             stdout=subprocess.PIPE, text=True, timeout=120)
        check(res.returncode == 0, 'host loop: %s' % res.stdout[-500:])
        check(len(re.findall(r'^ok ', res.stdout, re.M)) == 6, 'six sessions')
        serials = set(re.findall(r'serial=(\w+)', res.stdout))
        check(len(serials) == 6, 'six different boards: %s' % serials)
        sim.expect(r'done boards=6 provisioned=6 already=0 failed=0 dropped=0 .*')
        sim.expect(r'exit reason=done .*')
        check(sim.proc.wait(timeout=WAIT) == 0, 'exit 0 when done')
    finally:
        sim.stop()


class DirWatch:
    """inotify on a directory: the names deleted from it since the last call (never blocks)."""
    IN_DELETE = 0x200

    def __init__(self, path):
        libc = ctypes.CDLL(None, use_errno=True)
        self.fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        check(self.fd >= 0, 'inotify_init1: errno %d' % ctypes.get_errno())
        check(libc.inotify_add_watch(self.fd, path.encode(), self.IN_DELETE) >= 0,
              'inotify_add_watch: errno %d' % ctypes.get_errno())

    def deleted(self):
        names = []
        while True:
            try:
                buf = os.read(self.fd, 65536)
            except BlockingIOError:
                return names
            off = 0
            while off + 16 <= len(buf):
                _, mask, _, n = struct.unpack_from('iIII', buf, off)
                if mask & self.IN_DELETE:
                    names.append(buf[off + 16:off + 16 + n].rstrip(b'\0').decode())
                off += 16 + n

    def close(self):
        os.close(self.fd)


def wait_hangup(fd, what):
    po = select.poll()
    po.register(fd, select.POLLIN)
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        ev = po.poll(WAIT * 1000)
        if ev and ev[0][1] & (select.POLLHUP | select.POLLERR):
            return
        if ev:
            try:
                os.read(fd, 4096)       # a late answer nobody else read: not the hangup yet
            except BlockingIOError:
                pass
    raise Fail('%s: no hangup' % what)


def test_link_gone_before_hangup(tmp):
    """A link must never name a closed pty: once the station's fd is closed, the kernel gives its
    number to the next new pty, which may be another process's (a second simulator on the machine),
    and a station opening the link would then talk to that process's board. So the simulator
    deletes the link before it closes the master: when the station sees the hangup, the deletion
    has happened (inotify has queued it), whatever the scheduling."""
    links = os.path.join(tmp, 'hangup')
    os.mkdir(links)
    sim = Sim(links, '--count', '2', '--cycles', '2', '--seed', 'hangup')
    watch = DirWatch(links)
    try:
        plugs(sim, 2)
        sim.expect(r'ready 2')
        for name, line, reason in (('board-000', 'swap 0', 'swap'), ('board-000', 'replug 0', 'replug'),
                                   ('board-001', None, 'cycle')):
            link = os.path.join(links, name)
            old = os.readlink(link)
            fd = os.open(link, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
            try:
                watch.deleted()
                if line:
                    sim.control(line)
                else:
                    # A whole session: its RESULT ends the cycle and the next board is swapped in.
                    res, rc = host(link)
                    check(rc == 0, '%s session: %s' % (name, res))
                wait_hangup(fd, '%s (%s)' % (name, reason))
                check(name in watch.deleted(), '%s (%s): the link was still there at the hangup' % (name, reason))
                try:
                    now = os.readlink(link)
                except FileNotFoundError:
                    now = None
                check(now != old, '%s (%s) still names the closed %s' % (name, reason, old))
            finally:
                os.close(fd)
            sim.expect(r'unplug %s reason=%s' % (name, reason))
            m = sim.expect(r'plug %s (/dev/pts/\d+) serial=\w+' % name)
            check(os.readlink(link) == m.group(1), '%s made again for %s' % (link, m.group(1)))
    finally:
        watch.close()
        sim.stop()


def main():
    tests = (test_main, test_cycles, test_link_gone_before_hangup)
    # TAP on stdout (meson registers this test with protocol 'tap'): the plan,
    # one line per test, the reason of a failure as "# " comments.
    print('1..%d' % len(tests), flush=True)
    if not os.access(SIM, os.X_OK) or not os.access(HOST, os.X_OK):
        print('Bail out! missing %s or %s (PROVD_BUILD_DIR)' % (SIM, HOST), flush=True)
        return 1
    tmp = tempfile.mkdtemp(prefix='boardsim-it-')
    failed = 0
    try:
        for i, t in enumerate(tests, 1):
            try:
                t(tmp)
                print('ok %d - %s' % (i, t.__name__), flush=True)
            except Exception as e:  # noqa: BLE001 - every failure is one "not ok", the run goes on
                failed += 1
                print('not ok %d - %s' % (i, t.__name__), flush=True)
                for line in (str(e) or repr(e)).splitlines():
                    print('# ' + line, flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
