#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Checks the generated systemd unit, its drop-in examples, the sysusers and
tmpfiles snippets, the udev rule and the man pages, offline (no running
systemd needed).

Run by meson with PROVD_BUILD_DIR and PROVD_SOURCE_DIR set. Speaks TAP on
stdout: one "ok N" / "not ok N" per check, everything else as "# " comments,
the plan last ("1..0 # SKIP" when systemd-analyze is missing: scripts/deps.sh
installs it). Exit status 0 pass, 1 fail."""

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile

# Regression guard for `systemd-analyze security --offline=true` (0 = fully
# locked down, 10 = no sandbox; systemd calls <= 2.5 "OK"). With no network
# (PrivateNetwork=yes, AF_UNIX only) the unit scores 0.7; what remains is
# needed (see packaging/README.md, "Hardening"). Once the AWS client opens
# the network it may score no more than the 1.6 the unit had with it.
MAX_EXPOSURE = 0.7
MAX_EXPOSURE_WITH_NETWORK = 1.6
# With every example drop-in active (HSM over USB, simulator, AWS credentials).
MAX_EXPOSURE_WITH_EXAMPLES = 2.5

BUILD = os.environ.get('PROVD_BUILD_DIR', '')
SOURCE = os.environ.get('PROVD_SOURCE_DIR', '')
PKG = os.path.join(SOURCE, 'packaging')
UNIT = os.path.join(BUILD, 'packaging', 'provd.service')

failures = []
checks = 0


def note(text):
    """Diagnostic text as TAP comments, one "# " per line, so that the TAP
    reader never sees a line it does not know."""
    for line in str(text).splitlines():
        print('# ' + line if line else '#', flush=True)


def check(cond, what):
    global checks
    checks += 1
    # '#' would start a TAP directive (SKIP/TODO) in the description.
    desc = what.replace('#', '')
    print('%s %d - %s' % ('ok' if cond else 'not ok', checks, desc), flush=True)
    if not cond:
        failures.append(what)
    return cond


def run(*argv, **kw):
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, **kw)


def unit_settings(text):
    """[Section] Key=value pairs as a list of (section, key, value)."""
    out, section = [], None
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in '#;':
            continue
        m = re.match(r'^\[(.+)\]$', line)
        if m:
            section = m.group(1)
            continue
        key, _, value = line.partition('=')
        out.append((section, key.strip(), value.strip()))
    return out


def values(settings, key, section='Service'):
    return [v for s, k, v in settings if s == section and k == key]


def ini_value(path, section, key):
    """A value from provd.conf, commented-out defaults included."""
    cur = None
    with open(path) as f:
        for line in f:
            line = line.strip()
            m = re.match(r'^\[(.+)\]$', line)
            if m:
                cur = m.group(1)
                continue
            m = re.match(r'^#?\s*([a-z_]+)\s*=\s*(.*)$', line)
            if m and cur == section and m.group(1) == key:
                return m.group(2).strip()
    return None


def seconds(span):
    """systemd time span ("20s", "1min 30s", "500ms", "20") in seconds."""
    units = {'ms': 0.001, 's': 1, 'sec': 1, 'm': 60, 'min': 60, 'h': 3600, '': 1}
    total = 0.0
    for num, unit in re.findall(r'(\d+(?:\.\d+)?)\s*([a-z]*)', span):
        total += float(num) * units[unit]
    return total


def exposure(unit_path, extra_env=None):
    r = run('systemd-analyze', 'security', '--offline=true', '--no-pager', unit_path,
            env=dict(os.environ, SYSTEMD_COLORS='0', **(extra_env or {})))
    m = re.search(r'Overall exposure level for \S+: ([0-9.]+) (\S+)', r.stdout)
    return (float(m.group(1)), m.group(2), r.stdout) if m else (None, None, r.stdout)


def test_unit_content(settings):
    note('unit content')
    check(values(settings, 'User') == ['provd'] and values(settings, 'Group') == ['provd'],
          'runs as provd:provd')
    check(values(settings, 'SupplementaryGroups') == ['dialout'], 'SupplementaryGroups=dialout')
    have_systemd = False
    try:
        with open(os.path.join(BUILD, 'config.h')) as f:
            have_systemd = re.search(r'#define HAVE_SYSTEMD 1\b', f.read()) is not None
    except OSError:
        pass
    if have_systemd:
        check(values(settings, 'Type') == ['notify'], 'Type=notify (built with libsystemd)')
        check(values(settings, 'WatchdogSec') == ['30s'], 'WatchdogSec=30s')
        check(values(settings, 'NotifyAccess') == ['main'], 'NotifyAccess=main')
    else:
        check(values(settings, 'Type') == ['exec'], 'Type=exec (built without libsystemd)')
        check(not values(settings, 'WatchdogSec'), 'no watchdog without sd_notify()')

    conf = os.path.join(PKG, 'provd.conf')
    state_dir = ini_value(conf, 'station', 'state_dir')
    sock = ini_value(conf, 'station', 'control_socket')
    check(state_dir == '/var/lib/' + values(settings, 'StateDirectory')[0],
          'StateDirectory= matches [station] state_dir (%s)' % state_dir)
    check(os.path.dirname(sock) == '/run/' + values(settings, 'RuntimeDirectory')[0],
          'RuntimeDirectory= holds [station] control_socket (%s)' % sock)
    check(values(settings, 'RuntimeDirectoryMode') == ['0750'],
          'RuntimeDirectoryMode=0750 (group provd reaches the socket)')
    shutdown_s = int(ini_value(conf, 'timeouts', 'shutdown_ms')) / 1000
    stop_s = seconds(values(settings, 'TimeoutStopSec')[0])
    check(stop_s >= shutdown_s + 5,
          'TimeoutStopSec=%gs leaves room after shutdown_ms=%gs' % (stop_s, shutdown_s))
    starts = values(settings, 'ExecStart')
    check(len(starts) == 1 and '--config' in starts[0], 'one ExecStart= with --config')
    check(any('--check-config' in v for v in values(settings, 'ExecStartPre')),
          'ExecStartPre= checks the configuration')
    check(any('-HUP' in v for v in values(settings, 'ExecReload')), 'ExecReload= sends SIGHUP')
    nofile = values(settings, 'LimitNOFILE')
    check(nofile and int(nofile[0].split(':')[0]) >= 4096, 'LimitNOFILE= fits 512+ ports')
    allows = values(settings, 'DeviceAllow')
    check(values(settings, 'DevicePolicy') == ['closed'] and
          'char-ttyACM rw' in allows and 'char-ttyUSB rw' in allows,
          'DevicePolicy=closed with char-ttyACM/char-ttyUSB')
    for mod in ('cdc_acm', 'usbserial'):
        check(any('modprobe@%s.service' % mod in v for v in values(settings, 'After', 'Unit')),
              'ordered after modprobe@%s (DeviceAllow= needs its major)' % mod)


def source_number(rel, pattern, what):
    """A number from the daemon's sources (the limits the unit is sized for)."""
    with open(os.path.join(SOURCE, rel)) as f:
        m = re.search(pattern, f.read())
    check(m is not None, 'found %s in %s' % (what, rel))
    return int(m.group(1)) if m else None


def size_bytes(v):
    """systemd size ("512M", "1G", "1048576") in bytes; None for infinity."""
    m = re.fullmatch(r'(\d+)([KMGT]?)', v)
    if not m:
        return None
    return int(m.group(1)) * 1024 ** ' KMGT'.index(m.group(2) or ' ')


def test_resources(settings):
    """TasksMax= and MemoryMax= cover the largest configuration the daemon
    accepts, with the figures measured by bench/bench.py (see the unit)."""
    print('# resource limits')
    max_workers = source_number('daemon/conf-parse.c', r'U\("station", "workers", workers, \d+, (\d+)\)',
                                'the [station] workers limit')
    max_ports = source_number('daemon/conf-parse.c', r'U\("station", "max_ports", max_ports, \d+, (\d+)\)',
                              'the [station] max_ports limit')
    clients = source_number('daemon/control.h', r'#define CONTROL_MAX_CLIENTS (\d+)',
                            'CONTROL_MAX_CLIENTS')
    if None in (max_workers, max_ports, clients):
        return
    tasks = values(settings, 'TasksMax')
    # The pool, the loop, the writer and the checkpointer (67 measured with
    # workers = 64), ExecReload=, and room for library threads.
    need = max_workers + 3 + 1 + 16
    check(len(tasks) == 1 and tasks[0].isdigit() and need <= int(tasks[0]) <= 4 * need,
          'TasksMax=%s fits %d workers + 4 + 16 spare (and is a real bound)' % (tasks, max_workers))
    mem = values(settings, 'MemoryMax')
    mem_b = size_bytes(mem[0]) if len(mem) == 1 else None
    # 10 MiB idle, 25 KiB per port, 30 MiB SQLite cache and arenas, a 1.2 MB
    # devices page held per control client and 5 MiB to build one, 16 MiB
    # for the AWS client (the unit's comment).
    worst = ((10 << 20) + max_ports * 25 * 1024 + (30 << 20) + clients * 1200 * 1000 + (5 << 20)
             + (16 << 20))
    check(mem_b is not None and 2 * worst <= mem_b <= 8 * worst,
          'MemoryMax=%s is at least twice the worst case %d MiB (%d ports, %d clients), at most 8x'
          % (mem, worst >> 20, max_ports, clients))
    check(values(settings, 'MemorySwapMax') == ['0'], 'MemorySwapMax=0 (MemoryMax= bounds all memory)')


def test_network(settings):
    """No network client yet: no network (the AWS client relaxes this)."""
    print('# network')
    private = values(settings, 'PrivateNetwork') == ['yes']
    families = ' '.join(values(settings, 'RestrictAddressFamilies')).split()
    check(private, 'PrivateNetwork=yes (until the AWS client: see the unit)')
    check(families == ['AF_UNIX'], 'RestrictAddressFamilies=AF_UNIX only (got %s)' % families)
    check(values(settings, 'IPAddressDeny') == ['any'], 'IPAddressDeny=any')
    return private


def test_documentation(settings):
    """Documentation= names man pages the package ships, or a file that is
    not under /usr/share/doc (Debian compresses what is there)."""
    print('# Documentation=')
    docs = ' '.join(values(settings, 'Documentation', 'Unit')).split()
    check(docs, 'the unit has Documentation=')
    for uri in docs:
        m = re.fullmatch(r'man:([A-Za-z0-9._-]+)\(([1-9])\)', uri)
        if m:
            page = os.path.join(PKG, 'man', '%s.%s.in' % m.groups())
            check(os.path.exists(page), '%s is a page in packaging/man/' % uri)
        elif uri.startswith('file:'):
            check(not uri[5:].startswith('/usr/share/doc/'),
                  '%s is not under /usr/share/doc (dh_compress would compress it)' % uri)
        else:
            check(re.match(r'https?://', uri) is not None, '%s is a man:, file: or http(s): URI' % uri)


def stage_unit(tmp, text, dropins=()):
    """The unit with its binaries replaced by ones that exist here, since
    `systemd-analyze verify` insists that ExecStart= paths are executable."""
    m = re.search(r'^ExecStart=(\S+)', text, re.M)
    daemon = m.group(1)
    built = os.path.join(BUILD, 'daemon', 'provd')
    if os.access(daemon, os.X_OK):
        stand_in = daemon
    elif os.access(built, os.X_OK):
        stand_in = built
    else:
        stand_in = os.path.join(tmp, 'provd')
        with open(stand_in, 'w') as f:
            f.write('#!/bin/sh\nexit 0\n')
        os.chmod(stand_in, 0o755)
    text = text.replace(daemon, stand_in)
    if not os.access('/bin/kill', os.X_OK):
        note('note: /bin/kill (procps) missing here; the .deb depends on procps')
        text = text.replace('/bin/kill', '/bin/sh')
    d = os.path.join(tmp, 'units')
    os.makedirs(os.path.join(d, 'provd.service.d'), exist_ok=True)
    path = os.path.join(d, 'provd.service')
    with open(path, 'w') as f:
        f.write(text)
    for name, body in dropins:
        with open(os.path.join(d, 'provd.service.d', name), 'w') as f:
            f.write(body)
    return path


def verify(path, what, manpath=None):
    # With manpath, Documentation='s man: pages must be found there (man -w).
    env = dict(os.environ, SYSTEMD_COLORS='0')
    if manpath:
        env['MANPATH'] = manpath
    r = run('systemd-analyze', 'verify', '--man=yes' if manpath else '--man=no', path, env=env)
    # Complaints about other units on this machine are not ours.
    ours = [l for l in r.stdout.splitlines()
            if 'provd' in l or os.path.dirname(path) in l]
    if r.returncode != 0 or ours:
        note(r.stdout)
    check(r.returncode == 0 and not ours, 'systemd-analyze verify: ' + what)


def test_systemd(settings, text, private_network):
    note('systemd-analyze')
    limit = MAX_EXPOSURE if private_network else MAX_EXPOSURE_WITH_NETWORK
    with tempfile.TemporaryDirectory() as tmp:
        path = stage_unit(tmp, text)
        verify(path, 'generated unit')
        # The man pages as they are installed: <mandir>/manN/page.N.
        mandir = os.path.join(tmp, 'man')
        for name in MAN_PAGES:
            sect = os.path.join(mandir, 'man' + name.rsplit('.', 1)[1])
            os.makedirs(sect, exist_ok=True)
            built = os.path.join(BUILD, 'packaging', 'man', name)
            if os.path.exists(built):
                shutil.copy(built, sect)
        if shutil.which('man'):
            verify(path, "generated unit, its Documentation= man pages found among the built ones",
                   manpath=mandir)
        score, verdict, out = exposure(path)
        if score is None:
            note(out)
        else:
            note('\n'.join(l for l in out.splitlines() if l.startswith('\u2717')))
            note('exposure %.1f %s' % (score, verdict))
        check(score is not None and score <= limit,
              'security exposure %s <= %.1f' % (score, limit))

    # The shipped drop-in examples, with their commented-out settings enabled:
    # they must stay valid. (Their score is informative only: the enabled
    # IPAddressDeny= example lowers it.)
    examples = os.path.join(PKG, 'systemd', 'examples')
    dropins = []
    for name in sorted(os.listdir(examples)):
        with open(os.path.join(examples, name)) as f:
            body = re.sub(r'^#([A-Z][A-Za-z]+=)', r'\1', f.read(), flags=re.M)
        dropins.append((name, body))
    with tempfile.TemporaryDirectory() as tmp:
        path = stage_unit(tmp, text, dropins)
        verify(path, 'with every example drop-in (%s)' % ', '.join(n for n, _ in dropins))
        score, verdict, out = exposure(path)
        note('exposure with the examples: %s %s' % (score, verdict))
        check(score is not None and score <= MAX_EXPOSURE_WITH_EXAMPLES,
              'security exposure with the examples %s <= %.1f' % (score, MAX_EXPOSURE_WITH_EXAMPLES))


def test_sysusers_tmpfiles():
    note('sysusers.d, tmpfiles.d')
    sysusers = os.path.join(PKG, 'sysusers.d', 'provd.conf')
    tmpfiles = os.path.join(BUILD, 'packaging', 'tmpfiles.d', 'provd.conf')
    with open(tmpfiles) as f:
        confdir = re.search(r'^d\s+(\S+)', f.read(), re.M).group(1)   # /etc/provd
    if not shutil.which('systemd-sysusers'):
        note('skip: systemd-sysusers not installed')
        return
    with tempfile.TemporaryDirectory() as root:
        os.mkdir(os.path.join(root, 'etc'))
        r = run('systemd-sysusers', '--root=' + root, '--dry-run', sysusers)
        note(r.stdout)
        check(r.returncode == 0 and "Creating user 'provd'" in r.stdout,
              'systemd-sysusers --dry-run accepts sysusers.d/provd.conf')
        if os.geteuid() != 0:
            note('skip: applying sysusers/tmpfiles into a scratch root needs root (chown)')
            return
        # Apply both to a scratch root, as the package's postinst does.
        r = run('systemd-sysusers', '--root=' + root, sysusers)
        check(r.returncode == 0, 'systemd-sysusers applies to a scratch root')
        users = {}
        with open(os.path.join(root, 'etc', 'passwd')) as f:
            for line in f:
                p = line.split(':')
                users[p[0]] = (int(p[2]), int(p[3]), p[5], p[6].strip())
        groups = {}
        with open(os.path.join(root, 'etc', 'group')) as f:
            for line in f:
                p = line.strip().split(':')
                groups[p[0]] = (int(p[2]), p[3].split(',') if p[3] else [])
        check('provd' in users and users['provd'][1] == groups['provd'][0],
              'user provd with primary group provd')
        check(users['provd'][2:] == ('/var/lib/provd', '/usr/sbin/nologin'),
              'provd: home /var/lib/provd, no login shell')
        check('provd' in groups.get('dialout', (0, []))[1], 'provd is a member of dialout')

        etc = os.path.join(root, confdir.lstrip('/'))
        os.makedirs(etc, 0o755)
        for name, mode in (('provd.conf', 0o644), ('signer.key', 0o640)):
            with open(os.path.join(etc, name), 'w'):
                pass
            os.chmod(os.path.join(etc, name), mode)
        r = run('systemd-tmpfiles', '--root=' + root, '--create', tmpfiles)
        note(r.stdout)
        check(r.returncode == 0, 'systemd-tmpfiles --create applies tmpfiles.d/provd.conf')
        uid, gid = users['provd'][0], groups['provd'][0]
        for rel, want in (('', (0o750, 0, gid)), ('provd.conf.d', (0o750, 0, gid)),
                          ('provd.conf', (0o640, 0, gid)), ('signer.key', (0o600, uid, gid))):
            st = os.stat(os.path.join(etc, rel))
            got = (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
            check(got == want, '%s/%s is %o %d:%d (want %o %d:%d)' % ((confdir, rel) + got + want))


def test_udev():
    """udevadm in systemd 252 has no `verify`: a small structural lint."""
    note('udev rule')
    path = os.path.join(PKG, 'udev', '60-provd.rules')
    key_re = re.compile(r'\s*([A-Z_]+)(\{[^}]*\})?\s*(==|!=|\+=|-=|:=|=)\s*"((?:[^"\\]|\\.)*)"\s*(,|$)')
    known = {'ACTION', 'SUBSYSTEM', 'SUBSYSTEMS', 'KERNEL', 'KERNELS', 'ATTR', 'ATTRS',
             'ENV', 'DRIVER', 'DRIVERS', 'TAG', 'TAGS', 'GROUP', 'OWNER', 'MODE',
             'SYMLINK', 'GOTO', 'LABEL', 'IMPORT', 'RUN', 'PROGRAM', 'RESULT', 'NAME',
             'TEST', 'OPTIONS'}
    gotos, labels, bad, vidpid = [], set(), [], 0
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith('#'):
                continue
            pos, keys = 0, []
            while pos < len(line):
                m = key_re.match(line, pos)
                if not m or m.group(1) not in known:
                    bad.append('%d: %s' % (n, line))
                    break
                keys.append((m.group(1), m.group(2), m.group(3), m.group(4)))
                pos = m.end()
            for k, attr, op, v in keys:
                if k == 'GOTO':
                    gotos.append(v)
                elif k == 'LABEL':
                    labels.add(v)
                elif k == 'ATTRS' and attr == '{idVendor}' and op == '==' and re.fullmatch(r'[0-9a-f]{4}', v):
                    vidpid += 1
    for b in bad:
        note('cannot parse ' + b)
    check(not bad, 'every rule line parses')
    check(gotos and all(g in labels for g in gotos), 'every GOTO has its LABEL')
    check(vidpid >= 1, 'at least one board VID:PID is listed')
    with open(path) as f:
        text = f.read()
    check('ENV{ID_MM_DEVICE_IGNORE}="1"' in text, 'ModemManager is told to ignore the boards')


MAN_PAGES = ('provd.8', 'provd.conf.5', 'provctl.1', 'provd-boardsim.1')
PROGRAMS = {'provd.8': 'daemon/provd', 'provctl.1': 'daemon/provctl',
            'provd-boardsim.1': 'station-proto/boardsim/provd-boardsim'}


def roff_args(rest):
    """A macro line's arguments, with roff's double quotes."""
    out, cur, quoted, had = [], '', False, False
    for ch in rest:
        if ch == '"':
            quoted, had = not quoted, True
        elif ch == ' ' and not quoted:
            if cur or had:
                out.append(cur)
            cur, had = '', False
        else:
            cur += ch
    if cur or had:
        out.append(cur)
    return out


def roff_text(line):
    """The text a man page line prints (fonts dropped), for matching."""
    m = re.match(r'^\.(B|I|BR|RB|BI|IB|IR|RI|SM)\s+(.*)$', line)
    if m:
        args = roff_args(m.group(2))
        line = (' ' if m.group(1) in ('B', 'I', 'SM') else '').join(args)
    line = re.sub(r'\\f[BIRP]|\\f\(..|\\[&|^c]', '', line)
    return line.replace('\\-', '-').replace('\\(em', '-').strip()


def man_tags(path):
    """(section heading, tag text) for every .TP item of a page."""
    tags, heading = [], None
    with open(path) as f:
        lines = f.read().splitlines()
    for i, line in enumerate(lines):
        if line.startswith('.SS ') or line.startswith('.SH '):
            heading = roff_text(line[4:].strip('"'))
        elif line == '.TP' and i + 1 < len(lines):
            tags.append((heading, roff_text(lines[i + 1])))
    return tags


def help_text(prog):
    r = run(os.path.join(BUILD, PROGRAMS[prog]), '--help')
    check(r.returncode == 0, '%s --help exits 0' % PROGRAMS[prog])
    return r.stdout


def conf_keys_sample():
    """(section, key) of packaging/provd.conf, commented-out ones included."""
    keys, cur = [], None
    with open(os.path.join(PKG, 'provd.conf')) as f:
        for line in f:
            line = line.strip()
            m = re.match(r'^\[(.+)\]$', line)
            if m:
                cur = m.group(1)
                continue
            m = re.match(r'^#?\s*([a-z_]+)\s*=', line)
            if m and cur != 'slots':
                keys.append((cur, m.group(1)))
    return keys


def conf_keys_daemon():
    """(section, key) of the daemon's key table (daemon/conf-parse.c)."""
    with open(os.path.join(SOURCE, 'daemon', 'conf-parse.c')) as f:
        return re.findall(r'^\s*[PU]\("([a-z_]+)", "([a-z_]+)",', f.read(), re.M)


def test_man():
    print('# man pages')
    mandir = os.path.join(BUILD, 'packaging', 'man')
    pages = {}
    for name in MAN_PAGES:
        path = os.path.join(mandir, name)
        if not check(os.path.exists(path), '%s is built' % name):
            continue
        pages[name] = path
        with open(path) as f:
            text = f.read()
        left = re.findall(r'@[a-z_]+@', text)
        check(not left, '%s: no unsubstituted variables %s' % (name, ' '.join(left)))
        r = subprocess.run(['groff', '-man', '-ww', '-z', path], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, universal_newlines=True)
        note(r.stderr.rstrip()) if r.stderr.strip() else None
        check(r.returncode == 0 and not r.stderr.strip(), '%s: groff -man -ww -z has no warning' % name)
        # What lintian runs (its groff-message tag) at its 80 columns, and on
        # a narrow terminal: lines that cannot be broken or adjusted warn.
        for width in ('80', '60'):
            r = subprocess.run(['man', '--warnings', '-E', 'UTF-8', '-l', '-Tutf8', '-Z', path],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, universal_newlines=True,
                               env=dict(os.environ, LC_ALL='C.UTF-8', MANROFFSEQ='', MANWIDTH=width))
            note(r.stderr.rstrip()) if r.stderr.strip() else None
            check(r.returncode == 0 and not r.stderr.strip(),
                  '%s: man --warnings has no warning at %s columns' % (name, width))
        base, sect = name.rsplit('.', 1)
        check(re.search(r'^\.TH %s %s ' % (re.escape(base.upper().replace('-', '\\-')), sect),
                        text, re.M) is not None, '%s: .TH names the page and section %s' % (name, sect))
        r = run('lexgrog', path)
        check(r.returncode == 0 and ('"%s - ' % base) in r.stdout,
              '%s: NAME section is a whatis entry (%s)' % (name, r.stdout.strip()))

    if 'provd.conf.5' in pages:
        documented = {(h.strip('[]'), t.split()[0]) for h, t in man_tags(pages['provd.conf.5'])
                      if h and h.startswith('[') and t}
        with open(pages['provd.conf.5']) as f:
            headings = set(re.findall(r'^\.SS \[([a-z]+)\]$', f.read(), re.M))
        sample = conf_keys_sample()
        daemon = conf_keys_daemon()
        check(len(sample) >= 30, '%d keys found in packaging/provd.conf' % len(sample))
        check(len(daemon) >= 30, '%d keys found in the key table of daemon/conf-parse.c' % len(daemon))
        missing = sorted(set(sample) - documented)
        check(not missing, 'provd.conf(5) documents every key of packaging/provd.conf %s' % missing)
        missing = sorted(set(daemon) - documented)
        check(not missing, 'provd.conf(5) documents every key the daemon accepts %s' % missing)
        missing = sorted(set(daemon) - set(sample))
        check(not missing, 'packaging/provd.conf lists every key the daemon accepts %s' % missing)
        sections = {sec for sec, _ in sample} | {sec for sec, _ in daemon} | {'slots'}
        check(sections <= headings, 'provd.conf(5) has a [section] for every section %s'
              % sorted(sections - headings))

    if 'provctl.1' in pages:
        helptext = help_text('provctl.1')
        commands = []
        in_commands = False
        for line in helptext.splitlines():
            if line.startswith('Commands'):
                in_commands = True
                continue
            if not line.startswith('  '):
                in_commands = False
            if in_commands:
                first = re.split(r'\s{2,}', line.strip())[0]
                words = []
                for w in first.split():
                    if not re.fullmatch(r'[a-z][a-z-]*', w):
                        break
                    words.append(w)
                commands.append(' '.join(words))
        check(len(commands) >= 10, '%d commands in provctl --help' % len(commands))
        tags = [t for h, t in man_tags(pages['provctl.1']) if h == 'COMMANDS']
        missing = [c for c in commands if not any(t == c or t.startswith(c + ' ') for t in tags)]
        check(not missing, 'provctl(1) documents every command of provctl --help %s' % missing)

    for name in ('provd.8', 'provctl.1', 'provd-boardsim.1'):
        if name not in pages:
            continue
        options = set(re.findall(r'(?<![\w-])(--[a-z][a-z-]*)', help_text(name)))
        tags = ' '.join(t for h, t in man_tags(pages[name]) if h == 'OPTIONS')
        missing = sorted(o for o in options if not re.search(r'(?<![\w-])%s(?![\w-])' % o, tags))
        check(len(options) >= 4 and not missing,
              '%s documents every option of --help (%d) %s' % (name, len(options), missing))

    # Installed by meson to <mandir>/manN, and listed in the Debian packages.
    with open(os.path.join(BUILD, 'meson-info', 'intro-installed.json')) as f:
        installed = json.load(f)
    for name in MAN_PAGES:
        dest = [d for s, d in installed.items() if os.path.basename(s) == name]
        sect = name.rsplit('.', 1)[1]
        check(len(dest) == 1 and dest[0].endswith('/share/man/man%s/%s' % (sect, name)),
              'meson installs %s to share/man/man%s (%s)' % (name, sect, dest))
    listed = {}
    debian = os.path.join(PKG, 'debian')
    for inst in os.listdir(debian):
        if inst.endswith('.install'):
            with open(os.path.join(debian, inst)) as f:
                for line in f:
                    listed[line.strip()] = inst[:-len('.install')]
    for name, pkg in (('provd.8', 'provd'), ('provd.conf.5', 'provd'), ('provctl.1', 'provctl'),
                      ('provd-boardsim.1', 'provd-boardsim')):
        path = 'usr/share/man/man%s/%s' % (name.rsplit('.', 1)[1], name)
        check(listed.get(path) == pkg, 'debian/%s.install ships %s' % (pkg, path))


def main():
    if not BUILD or not SOURCE:
        print('Bail out! PROVD_BUILD_DIR and PROVD_SOURCE_DIR must be set')
        return 1
    if not shutil.which('systemd-analyze'):
        print('1..0 # SKIP systemd-analyze not found (apt-get install systemd; scripts/deps.sh does)')
        return 0
    with open(UNIT) as f:
        text = f.read()
    left = re.findall(r'@[a-z_]+@', text)
    check(not left, 'no unsubstituted configure_file variables %s' % ' '.join(left))
    settings = unit_settings(text)
    test_unit_content(settings)
    test_resources(settings)
    private_network = test_network(settings)
    test_documentation(settings)
    test_systemd(settings, text, private_network)
    test_sysusers_tmpfiles()
    test_udev()
    test_man()
    print('1..%d' % checks)
    if failures:
        note('%d check(s) failed:\n  ' % len(failures) + '\n  '.join(failures))
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
