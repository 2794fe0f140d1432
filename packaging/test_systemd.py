#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Checks the generated systemd unit, its drop-in examples, the sysusers and
tmpfiles snippets and the udev rule, offline (no running systemd needed).

Run by meson with PROVD_BUILD_DIR and PROVD_SOURCE_DIR set. Speaks TAP on
stdout: one "ok N" / "not ok N" per check, everything else as "# " comments,
the plan last ("1..0 # SKIP" when systemd-analyze is missing: scripts/deps.sh
installs it). Exit status 0 pass, 1 fail."""

import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile

# Regression guard for `systemd-analyze security --offline=true` (0 = fully
# locked down, 10 = no sandbox; systemd calls <= 2.5 "OK"). The unit scores
# about 1.5; what remains is needed (see packaging/README.md, "Hardening").
MAX_EXPOSURE = 2.0
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


def verify(path, what):
    r = run('systemd-analyze', 'verify', '--man=no', path,
            env=dict(os.environ, SYSTEMD_COLORS='0'))
    # Complaints about other units on this machine are not ours.
    ours = [l for l in r.stdout.splitlines()
            if 'provd' in l or os.path.dirname(path) in l]
    if r.returncode != 0 or ours:
        note(r.stdout)
    check(r.returncode == 0 and not ours, 'systemd-analyze verify: ' + what)


def test_systemd(settings, text):
    note('systemd-analyze')
    with tempfile.TemporaryDirectory() as tmp:
        path = stage_unit(tmp, text)
        verify(path, 'generated unit')
        score, verdict, out = exposure(path)
        if score is None:
            note(out)
        else:
            note('\n'.join(l for l in out.splitlines() if l.startswith('\u2717')))
            note('exposure %.1f %s' % (score, verdict))
        check(score is not None and score <= MAX_EXPOSURE,
              'security exposure %s <= %.1f' % (score, MAX_EXPOSURE))

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
    test_systemd(settings, text)
    test_sysusers_tmpfiles()
    test_udev()
    print('1..%d' % checks)
    if failures:
        note('%d check(s) failed:\n  ' % len(failures) + '\n  '.join(failures))
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
