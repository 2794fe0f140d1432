#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Where provd's CPU goes: a perf profile (perf record --call-graph dwarf) folded
into the categories docs/PERFORMANCE.md discusses, per thread role.

    perfbreak.py PERF_DATA [--pid PID] [--us-per-board US]

bench.py --perf FILE runs this on its own profile. Each sample is put in the
first category whose rule matches its stack (innermost rules first within a
role), so the shares add up to 100 %. With --us-per-board the shares are also
shown as microseconds per board (provd's measured CPU per board times the share).
"""

import argparse
import collections
import re
import subprocess
import sys

FRAME = re.compile(r"\s*([0-9a-f]+) (.*) \((.*)\)$")
# "pid/tid" heading each sample; perf right-aligns it, so it may start with spaces.
HEAD = re.compile(r"\s*(\d+)/(\d+)\s*$")


def samples(perf_data):
    """Yields (pid, tid, [function names, innermost first], leaf dso) for each sample."""
    out = subprocess.run(["perf", "script", "-i", perf_data, "-F", "pid,tid,ip,sym,dso"],
                         capture_output=True, text=True, errors="replace")
    if out.returncode != 0:
        raise RuntimeError(f"perf script failed: {out.stderr.strip()[:500]}")
    pid = tid = None
    frames = []
    leaf = None
    for line in out.stdout.splitlines():
        if not line.strip():
            if tid is not None:
                yield pid, tid, frames, leaf
            pid = tid = leaf = None
            frames = []
            continue
        h = HEAD.match(line)
        if h:
            pid, tid = int(h.group(1)), int(h.group(2))
            continue
        m = FRAME.match(line)
        if m:
            if leaf is None and m.group(3) != "inlined":
                leaf = m.group(3).rsplit("/", 1)[-1]
            sym = m.group(2)
            if sym == "[unknown]":
                sym = "[" + m.group(3).rsplit("/", 1)[-1] + "]"
            frames.append(sym)
    if tid is not None:
        yield pid, tid, frames, leaf


def any_of(names, *keys):
    return any(k in names for k in keys)


def has_prefix(names, prefix):
    return any(n.startswith(prefix) for n in names)


def role(pid, tid, names):
    if "writer_main" in names:
        return "db writer"
    if "checkpointer_main" in names:
        return "db checkpointer"
    if tid == pid:
        return "event loop"
    if any_of(names, "work_issue", "work_verify", "after_issue") or "[libuv.so.1.0.0]" in names:
        return "crypto workers"
    return "other threads"


def category(r, names):
    sync = any_of(names, "fdatasync", "__GI_fdatasync", "__x64_sys_fdatasync", "fsync", "__x64_sys_fsync")
    if r == "crypto workers":
        if "work_issue" in names:
            if any_of(names, "csr_parse_validate"):
                return "CSR parse + signature check (csr_parse_validate)"
            if has_prefix(names, "issuer_issue"):
                return "certificate build + signature (issuer_issue)"
            return "issue job, other"
        if "work_verify" in names:
            return "proof verification (proof_verify_csr)"
        return "thread pool wait/wake-up"
    if r in ("db writer", "db checkpointer"):
        if any_of(names, "sqlite3WalCheckpoint", "sqlite3_wal_checkpoint_v2", "walCheckpoint"):
            return "WAL checkpoint (copy to the db file + fsync)"
        if sync:
            return "COMMIT: fdatasync"
        if any_of(names, "__libc_pwrite64", "__x64_sys_pwrite64", "pwrite64"):
            return "COMMIT: WAL frame writes (pwrite)"
        if any_of(names, "append_audit", "audit_insert", "audit_head"):
            return "audit log (hash chain + insert)"
        if any_of(names, "outbox_enqueue"):
            return "AWS outbox insert"
        if any_of(names, "cJSON_PrintUnformatted", "cJSON_CreateObject", "cJSON_Delete", "json_print"):
            return "cJSON (audit/outbox payloads)"
        if any_of(names, "do_issuance"):
            return "issuance statements (device, certificate)"
        if any_of(names, "do_outcome"):
            return "outcome statements (certificate, device, attempt)"
        if any_of(names, "do_lookup"):
            return "lookup"
        if any_of(names, "run_batch"):
            return "BEGIN/COMMIT/SAVEPOINT bookkeeping"
        return "queue wait/wake-up"
    if r == "event loop":
        if any_of(names, "log_internal", "log_internalv", "sd_journal_send", "sd_journal_sendv"):
            return "logging"
        if any_of(names, "usb_location_of"):
            return "port scan: usb_location_of (realpath)"
        if any_of(names, "station_new"):
            return "port open (station_new: open, termios, HELLO)"
        if any_of(names, "on_rescan", "rescan", "scan_usb", "consider_port"):
            return "port scan: glob, stat, duplicate check"
        if any_of(names, "station_close", "on_handle_closed", "maybe_free", "manager_station_gone",
                  "station_free"):
            return "port close"
        if any_of(names, "flush_tx"):
            return "write() requests to the tty"
        if any_of(names, "sp_client_request", "spc_frame_encode", "sp_tlv_put", "send_request"):
            return "encode requests (TLV, COBS, CRC)"
        if any_of(names, "__GI___libc_read", "__libc_read", "ksys_read") and "on_poll" in names:
            return "read() responses from the tty"
        if any_of(names, "sp_parser_feed", "on_frame"):
            return "frame parser + session logic"
        if any_of(names, "on_async", "db_submit"):
            return "DB hand-off (submit, completions)"
        if any_of(names, "uv__work_done", "after_issue", "after_verify", "uv_queue_work"):
            return "worker hand-off (queue, completions)"
        if any_of(names, "control_read", "on_control", "station_status", "manager_status", "control_reply"):
            return "control socket (status queries)"
        if any_of(names, "epoll_wait", "do_epoll_wait", "__x64_sys_epoll_wait"):
            return "epoll_wait"
        if any_of(names, "epoll_ctl", "__GI_epoll_ctl", "do_epoll_ctl"):
            return "epoll_ctl"
        return "libuv and other"
    return "other"


LIBC_GROUPS = (
    ("malloc/free", ("malloc", "free", "_int_malloc", "_int_free", "calloc", "realloc", "cfree",
                     "malloc_consolidate", "unlink_chunk", "__libc_malloc", "__libc_free", "__GI___libc_malloc")),
    ("printf family", ("vfprintf", "__vfprintf_internal", "printf_fp", "__printf_fp_l", "vsnprintf",
                       "__vsnprintf_internal", "snprintf", "fprintf", "hack_digit", "buffered_vfprintf")),
    ("mutex/futex", ("pthread_mutex", "__pthread_mutex", "pthread_cond", "__pthread_cond", "lll_", "futex",
                     "pthread_rwlock", "__pthread_rwlock")),
    ("mem*/str*", ("memcpy", "memmove", "memset", "memcmp", "strlen", "strcmp", "strchr", "__mem", "__str")),
)


def component(frames, leaf):
    """What the innermost frame belongs to: a library, provd's own code, or the kernel by syscall."""
    leaf = leaf or "?"
    top = frames[0] if frames else "?"
    if leaf.endswith("kernel.kallsyms]") or leaf == "[kernel.kallsyms]":
        for n in frames:
            if n.startswith(("__x64_sys_", "__do_sys_", "__se_sys_")):
                return "kernel: " + n.split("sys_", 1)[1]
        for n in frames:
            if n in ("ksys_read", "vfs_read"):
                return "kernel: read"
            if n in ("ksys_write", "vfs_write"):
                return "kernel: write"
        return "kernel: other (faults, interrupts, scheduling)"
    if leaf.startswith("libcrypto"):
        # libcrypto has no debug information: classify by provd's caller where the unwinder got there.
        if any_of(frames, "certs_ec_key_from_point", "EC_KEY_oct2key", "EC_POINT_oct2point"):
            return "OpenSSL: public key from the point (decode, on-curve check)"
        if any_of(frames, "certs_ec_key_verify", "file_sign", "signer_sign", "ECDSA_do_verify", "ECDSA_do_sign_ex",
                  "ECDSA_sign_ex", "EC_POINT_mul") or has_prefix(frames, "ossl_ecdsa"):
            return "OpenSSL: ECDSA sign/verify (P-256 arithmetic, digest)"
        if any_of(frames, "hash_fields", "audit_hash", "db_sha256_hex", "SHA256", "EVP_Digest", "EVP_Q_digest"):
            return "OpenSSL: SHA-256 (certificate id, audit chain)"
        if any_of(frames, "RAND_bytes", "RAND_bytes_ex", "random_serial", "RAND_priv_bytes_ex"):
            return "OpenSSL: random numbers (serials, nonces)"
        return "OpenSSL: other (ASN.1, fetches, locks, allocation)"
    if leaf.startswith("libsqlite3"):
        return "SQLite"
    if leaf.startswith("libuv"):
        return "libuv"
    if leaf.startswith("libcjson"):
        return "cJSON"
    if leaf.startswith("libc.so"):
        for name, keys in LIBC_GROUPS:
            if any(k in top for k in keys):
                return "libc: " + name
        return "libc: other"
    if leaf == "provd":
        if top.startswith(("sp_", "spc_", "spb_")):
            return "provd: station protocol (parser, TLV, COBS, CRC)"
        return "provd: own code"
    return leaf


def breakdown(perf_data, pid=None):
    """{role: {category: samples}}, {component: samples}, total samples."""
    out = collections.defaultdict(collections.Counter)
    comp = collections.Counter()
    total = 0
    for p, tid, frames, leaf in samples(perf_data):
        if pid is not None and p != pid:
            continue
        r = role(p, tid, frames)
        out[r][category(r, frames)] += 1
        comp[component(frames, leaf)] += 1
        total += 1
    return out, comp, total


def report(perf_data, pid=None, us_per_board=None, file=sys.stdout):
    out, comp, total = breakdown(perf_data, pid)
    if not total:
        print("  (no samples)", file=file)
        return {}
    res = {}
    for r, cats in sorted(out.items(), key=lambda x: -sum(x[1].values())):
        n = sum(cats.values())
        us = f" {us_per_board * n / total:6.0f} us" if us_per_board else ""
        print(f"  {100 * n / total:5.1f} %{us}  {r}", file=file)
        res[r] = {"share": round(n / total, 4), "categories": {}}
        for c, k in cats.most_common():
            res[r]["categories"][c] = round(k / total, 4)
            if k / total < 0.002:
                continue
            us = f" {us_per_board * k / total:6.0f} us" if us_per_board else ""
            print(f"      {100 * k / total:5.1f} %{us}  {c}", file=file)
    print("  by the code the samples landed in (all threads):", file=file)
    res["components"] = {}
    for c, k in comp.most_common():
        res["components"][c] = round(k / total, 4)
        if k / total < 0.003:
            continue
        us = f" {us_per_board * k / total:6.0f} us" if us_per_board else ""
        print(f"      {100 * k / total:5.1f} %{us}  {c}", file=file)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("perf_data")
    ap.add_argument("--pid", type=int, help="only this process (default: every sample)")
    ap.add_argument("--us-per-board", type=float, help="provd's CPU per board, to print microseconds")
    a = ap.parse_args()
    report(a.perf_data, a.pid, a.us_per_board)


if __name__ == "__main__":
    main()
