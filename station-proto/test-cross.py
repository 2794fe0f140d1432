#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# Cross-builds the board library for Cortex-M0+, Cortex-M4F and AVR; fails on a warning; prints sizes, RAM and the worst stack path.
"""
For every target (a missing compiler fails: scripts/deps.sh installs them; sdcc for the 8051), each board source is compiled
with `-std=c99 -ffreestanding -Wall -Wextra -Werror -pedantic -Os` from the
public include folder alone (sp-core.h is found next to the sources, never
through -I). Any compiler output fails the test, as does an undefined symbol
other than memchr/memcmp/memcpy/memmove/memset, __bswapsi2 and __gnu_thumb1_case_* (a libgcc
helper such as __aeabi_uidiv or 64-bit arithmetic on AVR), .data or .bss in the library.

The worst stack depth is summed along the call graph: the frame sizes come
from -fstack-usage, the edges from the call relocations in `objdump -dr`
(-ffunction-sections gives every function its own section, so calls
between static functions carry a relocation too). Indirect calls are the
ops callbacks; "under a callback" is the library's stack at the deepest
indirect call, i.e. what a callback adds its own stack to. libc and
libgcc calls are counted as 0 bytes.

RAM for a 1024-byte frame (rx 1024 + work SPB_WORK_BUF(301) + tx SPB_TX_MIN
+ struct spb_board + worst stack) is printed next to the same figure for the
buffers the library needed before (rx + SPB_TX_BUF(1024) + work 1024), so a
regression shows.

Usage: test-cross.py SRCDIR [--only TARGET]
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile

SOURCES = ["board.c", "crc.c", "cobs.c", "tlv.c", "frame.c", "sha256.c"]
FLAGS = ["-std=c99", "-ffreestanding", "-Wall", "-Wextra", "-Werror", "-pedantic", "-Os",
         "-ffunction-sections", "-fdata-sections", "-fstack-usage"]
LIBC_OK = {"memchr", "memcmp", "memcpy", "memmove", "memset"}
# libgcc helpers without arithmetic that every toolchain has (a byte swap, the Thumb-1 switch
# table lookups); a division or 64-bit helper fails.
LIBGCC_OK = {"__bswapsi2", "__gnu_thumb1_case_uqi", "__gnu_thumb1_case_uhi", "__gnu_thumb1_case_sqi",
             "__gnu_thumb1_case_shi", "__gnu_thumb1_case_si"}

# name, compiler prefix, flags, bytes a call pushes beyond the callee's -fstack-usage frame
TARGETS = [
    ("cortex-m0plus", "arm-none-eabi-", ["-mcpu=cortex-m0plus", "-mthumb"], 0),
    ("cortex-m4f", "arm-none-eabi-", ["-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard"], 0),
    # ATmega4808 and its family (avrxmega3): 16-bit int and size_t, 2-byte return address.
    ("avr-xmega3", "avr-", ["-mmcu=avrxmega3"], 2),
]
FRAME = 1024
# AVR RAM at a 1024-byte frame before this layout (rx + SPB_TX_BUF + work of a frame each, the
# 64-word SHA-256 schedule and the 64-entry PUT_CONFIG table on the stack), measured with this
# script on the tree before: the acceptance bound is half of it.
AVR_RAM_BEFORE = 3744
CSR_MAX = 301           # the simulator's largest CSR (64-character CN)

CALL_RELOCS = re.compile(r"R_(ARM_THM_CALL|ARM_THM_JUMP24|ARM_CALL|ARM_JUMP24|AVR_CALL|AVR_13_PCREL)\s+(\S+)")
INDIRECT = re.compile(r"\t(blx\s+r\d+|bx\s+r[0-9]\b|bx\s+r1[0-2]|bx\s+ip|icall|eicall|ijmp|eijmp)")


def run(cmd, cwd=None):
    p = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return p.returncode, p.stdout


def callee_name(sym):
    sym = sym.split("+")[0]
    if sym.startswith(".text."):
        return sym[len(".text."):]
    return sym


def call_graph(objdump, obj):
    """{function: (set of direct callees, has an indirect call)}"""
    rc, out = run([objdump, "-dr", obj])
    if rc:
        raise SystemExit(f"FAILED: {objdump} -dr {obj}: {out}")
    graph = {}
    cur = None
    for line in out.splitlines():
        m = re.match(r"^[0-9a-f]+ <([^>]+)>:$", line)
        if m:
            cur = m.group(1)
            graph.setdefault(cur, [set(), False])
            continue
        if cur is None:
            continue
        m = CALL_RELOCS.search(line)
        if m:
            callee = callee_name(m.group(2))
            if callee != cur and not callee.startswith(".L"):
                graph[cur][0].add(callee)
            continue
        if INDIRECT.search(line):
            graph[cur][1] = True
    return graph


def stack_usage(path):
    su = {}
    with open(path) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 3:
                continue
            name = parts[0].split(":")[-1]
            su[name] = (int(parts[1]), parts[2])
    return su


def worst(graph, su, call_cost):
    """Deepest path from each function: {f: (bytes, [path])}, and the deepest indirect call."""
    memo = {}

    def depth(f, seen):
        if f in memo:
            return memo[f]
        if f in seen:
            raise SystemExit(f"FAILED: recursion through {f}: the stack depth has no bound")
        own = su.get(f, (0, ""))[0]
        best = (own, [f])
        for c in graph.get(f, [set(), False])[0]:
            if c in LIBC_OK or c in LIBGCC_OK:
                continue
            d, p = depth(c, seen | {f})
            if own + call_cost + d > best[0]:
                best = (own + call_cost + d, [f] + p)
        memo[f] = best
        return best

    # Deepest path that ends in a function making an indirect call.
    cb_memo = {}

    def to_callback(f, seen):
        if f in cb_memo:
            return cb_memo[f]
        own = su.get(f, (0, ""))[0]
        best = (own + call_cost, [f, "<callback>"]) if graph.get(f, [set(), False])[1] else (-1, [])
        for c in graph.get(f, [set(), False])[0]:
            if c in LIBC_OK or c in seen:
                continue
            d, p = to_callback(c, seen | {f})
            if d >= 0 and own + call_cost + d > best[0]:
                best = (own + call_cost + d, [f] + p)
        cb_memo[f] = best
        return best

    roots = ["spb_feed", "spb_complete", "spb_init", "spb_reset", "spb_sha256"]
    deepest = max((depth(r, set()) for r in roots if r in graph), key=lambda x: x[0])
    cb = max((to_callback(r, set()) for r in roots if r in graph), key=lambda x: x[0])
    return deepest, cb


def board_struct_size(cc, flags, src, tmp):
    """sizeof(struct spb_board) on the target, read back from a symbol's size."""
    probe = os.path.join(tmp, "probe.c")
    with open(probe, "w") as f:
        f.write('#include "station-proto/sp-board.h"\n'
                "const char spb_size_probe[sizeof(struct spb_board)] = { 1 };\n")
    obj = os.path.join(tmp, "probe.o")
    rc, out = run([cc] + flags + ["-std=c99", "-I", os.path.join(src, "include"), "-c", probe, "-o", obj])
    if rc:
        raise SystemExit(f"FAILED: probe: {out}")
    return obj


def check_target(src, name, prefix, tflags, call_cost):
    cc = prefix + "gcc"
    if not shutil.which(cc):
        # A missing cross compiler fails rather than skips: the acceptance of the cross builds
        # is that they run in CI (scripts/deps.sh installs them).
        print(f"FAILED: {name}: {cc} not installed (scripts/deps.sh installs it)")
        return False
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        objs = []
        for s in SOURCES:
            obj = os.path.join(tmp, s[:-2] + ".o")
            # -I for the public include folder only: sp-core.h comes from the source's own directory.
            cmd = [cc] + tflags + FLAGS + ["-I", os.path.join(src, "include"), "-c", os.path.join(src, s),
                                           "-o", obj]
            rc, out = run(cmd, cwd=tmp)
            if rc or out.strip():
                print(f"FAILED: {name}: {' '.join(cmd)}\n{out}")
                failed = True
                continue
            objs.append(obj)
        if failed:
            return False

        rc, out = run([prefix + "size", "-t"] + objs)
        total = [l for l in out.splitlines() if l.strip().endswith("(TOTALS)")]
        text, data, bss = (int(x) for x in total[0].split()[:3])

        rc, out = run([prefix + "nm", "-u"] + objs)
        ours = set()
        rc2, defs = run([prefix + "nm", "--defined-only"] + objs)
        for l in defs.splitlines():
            p = l.split()
            if len(p) == 3:
                ours.add(p[2])
        undef = sorted({l.split()[-1] for l in out.splitlines() if l.strip().startswith("U ")} - ours - LIBC_OK - LIBGCC_OK)
        if undef:
            print(f"FAILED: {name}: calls outside the library and memchr/memcmp/memcpy/memmove/memset: "
                  f"{' '.join(undef)}")
            failed = True
        if data or bss:
            print(f"FAILED: {name}: the library has .data {data} / .bss {bss} (all state is the caller's)")
            failed = True

        graph, su = {}, {}
        for obj in objs:
            for f, v in call_graph(prefix + "objdump", obj).items():
                graph[f] = v
            sufile = obj[:-2] + ".su"
            if os.path.exists(sufile):
                su.update(stack_usage(sufile))
        dynamic = sorted(f for f, (n, kind) in su.items() if "dynamic" in kind and "bounded" not in kind)
        if dynamic:
            print(f"FAILED: {name}: unbounded dynamic stack in {' '.join(dynamic)}")
            failed = True
        (deep, path), (cbdeep, cbpath) = worst(graph, su, call_cost)

        probe = board_struct_size(cc, tflags, src, tmp)
        rc, out = run([prefix + "nm", "-S", probe])
        struct_size = int([l for l in out.splitlines() if "spb_size_probe" in l][0].split()[1], 16)

    work = max(225, CSR_MAX + 2 * 3 + 65)
    tx = 8
    buffers = FRAME + work + tx + struct_size
    before = FRAME + (FRAME + FRAME // 254 + 3) + FRAME + struct_size
    print(f"{name}: .text {text} .data {data} .bss {bss}")
    print(f"{name}: worst stack {deep} B: {' > '.join(path)}")
    print(f"{name}: stack under a callback {cbdeep} B: {' > '.join(cbpath)}")
    print(f"{name}: RAM at a {FRAME}-byte frame: rx {FRAME} + work {work} + tx {tx} + struct {struct_size}"
          f" + stack {deep} = {buffers + deep} B (buffers the library needed before: {before} B + stack)")
    if name.startswith("avr") and 2 * (buffers + deep) > AVR_RAM_BEFORE:
        print(f"FAILED: {name}: {buffers + deep} B is more than half of the {AVR_RAM_BEFORE} B it took before")
        failed = True
    return not failed


def check_sdcc(src):
    """8051 (sdcc, --stack-auto as callbacks through pointers need): warning-free, and the
    largest local frames (the 8051 stack is 256 bytes of internal RAM)."""
    if not shutil.which("sdcc"):
        print("FAILED: mcs51: sdcc not installed (scripts/deps.sh installs it)")
        return False
    failed = False
    frames = []
    with tempfile.TemporaryDirectory() as tmp:
        for s in SOURCES:
            rel = os.path.join(tmp, s[:-2] + ".rel")
            cmd = ["sdcc", "-mmcs51", "--model-large", "--stack-auto", "--std-c99", "-I",
                   os.path.join(src, "include"), "-c", os.path.join(src, s), "-o", rel]
            rc, out = run(cmd, cwd=tmp)
            if rc or out.strip():
                print(f"FAILED: mcs51: {' '.join(cmd)}\n{out}")
                failed = True
                continue
            fn = None
            lines = open(rel[:-4] + ".asm").read().splitlines()
            for i, line in enumerate(lines):
                m = re.match(r"^_(\w+):$", line)
                if m:
                    fn = m.group(1)
                if line.strip() == "mov\ta,sp" and i + 1 < len(lines):
                    m = re.match(r"^\s*add\s+a,#0x([0-9a-fA-F]+)$", lines[i + 1])
                    # an add of 0x80 and more is the epilogue's sp decrement
                    if m and fn and int(m.group(1), 16) < 0x80:
                        frames.append((int(m.group(1), 16), fn))
    if failed:
        return False
    frames.sort(reverse=True)
    print("mcs51: largest local frames (bytes of the 256-byte stack): " +
          ", ".join(f"{f} {n}" for n, f in frames[:4]))
    return True


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    src = os.path.abspath(sys.argv[1])
    only = sys.argv[3] if len(sys.argv) > 3 and sys.argv[2] == "--only" else None
    results = []
    for t in TARGETS:
        if only and t[0] != only:
            continue
        results.append(check_target(src, *t))
    if not only or only == "mcs51":
        results.append(check_sdcc(src))
    return 1 if any(r is False for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
