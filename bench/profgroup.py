#!/usr/bin/python3
"""Group a profile's self costs by where they go (used by bench/profile.sh).

  profgroup.py callgrind SELF.txt MESSAGES [INCL.txt]
      SELF.txt / INCL.txt: callgrind_annotate --inclusive=no / yes output.
      Prints instructions per message by group and the top functions.
  profgroup.py perf PERF.txt WSBENCH.json
      PERF.txt: perf report --no-children --sort dso,symbol --stdio -g none.
      Prints % of samples and µs per message (server_cpu/msgs_per_s split
      by the sample shares) by group.
"""
import json
import re
import subprocess
import sys
from collections import defaultdict

REPO_CSRC = "/csrc/"

GROUPS = [
    ("Lua VM: bytecode interpreter", r"^(luaV_execute|luaV_equalobj|luaV_lessthan|luaV_lessequal|luaV_concat|luaV_tointeger.*|luaV_objlen|luaV_idiv|luaV_mod.*|luaO_.*|luaG_.*|l_strcmp|luaV_tonumber_)$"),
    ("Lua VM: tables, strings, metatables", r"^(luaH_.*|luaS_.*|internshrstr|mainposition.*|getgeneric|hashkey.*|luaV_finishget|luaV_finishset|luaT_gettm.*|insert_?key.*|luaH_newkey|rehash|numusehash|setnodevector|reinsert|luaV_fastget.*|arrayindex|keyinarray|luaT_objtypename)$"),
    ("Lua calls, varargs, closures", r"^(luaD_precall|luaD_poscall|luaD_call|luaD_callnoyield|luaD_pretailcall|luaD_growstack|luaD_reallocstack|luaD_hook.*|luaT_adjustvarargs|luaT_getvarargs|luaF_.*|luaT_callTM.*|luaE_checkcstack|luaE_extendCI|luaE_.*|moveresults|prepCallInfo|ccall|tryfuncTM|luaD_inctop)$"),
    ("coroutine resume/yield (sched.wake → coroutine.resume)", r"^(lua_resume|resume|unroll|auxresume|luaB_coresume|luaB_yield|lua_yieldk|finishCcall|finishpcallk|luaB_auxwrap|lua_status|luaB_corunning|lua_isyieldable|luaB_yieldable|lua_pushthread|luaB_costatus|auxstatus|precover|resume_error)$"),
    ("lua_pcall dispatch from C", r"^(lua_pcallk|luaD_pcall|luaD_rawrunprotected|f_call|luaD_closeprotected|luaD_seterrorobj)$"),
    ("Lua C API, luaL_checkudata, base library", r"^(lua_.*|luaL_.*|index2value|index2stack|aux_.*|__strcmp.*|strcmp|luaB_.*|reverse|luai_.*|auxgetstr|auxsetstr|tonum|l_str2int|l_str2d|luaO_str2num)$"),
    ("Lua GC", r"^(luaC_.*|sweep.*|propagate.*|freeobj|singlestep|reallymarkobject|atomic.*|traverse.*|remark.*|luaM_.*|mark.*|entersweep|youngcollection|genstep|incstep|fullinc|clearby.*|convergeephemerons|restartcollection|cleargraylists|correctgraylist.*|checkSizes|separatetobefnz|GCTM|callallpendingfinalizers|luaE_freethread|linkgclist_|setpause|luaE_setdebt|l_alloc|freeupval|luaF_freeproto|luaF_unlinkupval|sweeplist|sweeptolive|getgclist|twoups|whitelist|udata2finalize|dothecall|finishgencycle|stepgenfull|atomic2gen|sweep2old|markbeingfnz)$"),
    ("malloc/free (glibc)", r"^(_int_malloc|_int_free|_int_realloc|malloc|free|cfree.*|realloc|calloc|malloc_consolidate|unlink_chunk.*|tcache_.*|__libc_malloc|__libc_free|__libc_realloc|__GI___libc_.*|_int_free_merge_chunk|_int_free_create_chunk|_int_free_maybe_consolidate|sysmalloc|__default_morecore|brk|sbrk|__brk|__sbrk|alloc_perturb|checked_request2size)$"),
]
GROUP_RE = [(g, re.compile(r)) for g, r in GROUPS]


def core_files(so="build/uvws/core.so"):
    """symbol -> source file for uvws's core.so (nm -l), for perf."""
    m = {}
    try:
        out = subprocess.run(["nm", "-l", so], capture_output=True, text=True).stdout
    except OSError:
        return m
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 4 and ":" in parts[3]:
            name = re.sub(r"\.(isra|constprop|part|cold)\.\d+.*$", "", parts[2])
            m[name] = parts[3].rsplit(":", 1)[0]
    return m


CORE = None


def classify(func, obj, src=""):
    global CORE
    func = re.sub(r"'\d+$", "", func)            # callgrind recursion tags
    func = re.sub(r"\.(isra|constprop|part|cold)\.\d+.*$", "", func)
    if "kernel" in obj or obj.startswith("[k"):
        return "kernel (syscalls, TCP, epoll)"
    if "core.so" in obj:
        if not src:
            if CORE is None:
                CORE = core_files()
            src = CORE.get(func, "")
        base = src.rsplit("/", 1)[-1]
        if base.startswith("ws_") or func.startswith("ws_"):
            return "uvws protocol core (ws_*.c: parse, frame, mask)"
        if base.startswith("io_") or func.startswith("io_"):
            return "uvws transport (io_*.c)"
        if base.startswith("lua_core") or func.startswith("l_"):
            return "uvws Lua binding (lua_core.c)"
        return "uvws C (other)"
    if "libuv" in obj:
        return "libuv"
    if "libcrypto" in obj or "libssl" in obj:
        return "OpenSSL"
    for g, r in GROUP_RE:
        if r.match(func):
            return g
    if "libc" in obj:
        if re.match(r"^(__)?(memcpy|memmove|memset|memcmp|strlen|memchr).*", func):
            return "libc memcpy/memset/strlen"
        return "libc syscall wrappers, other"
    if "lua5.4" in obj:
        return "Lua VM: other"
    return "other"


def num(s):
    return float(s.replace(",", ""))


def top(items, n, unit):
    print(f"\ntop {n} functions (self):")
    for cost, func, obj, grp in sorted(items, reverse=True)[:n]:
        print(f"  {unit(cost):>12}  {func:<40} {grp}")


def do_callgrind(self_txt, msgs, incl_txt=None):
    rx = re.compile(r"^\s*([\d,]+)\s+\(\s*([\d.]+)%\)\s+(.*?):(\S+)\s+\[(.*)\]\s*$")
    total = None
    items = []
    for line in open(self_txt):
        if "PROGRAM TOTALS" in line:
            total = num(line.split()[0])
            continue
        m = rx.match(line)
        if not m:
            continue
        cost, pct, src, func, obj = num(m.group(1)), float(m.group(2)), m.group(3), m.group(4), m.group(5)
        # Frames that were on the stack when the counters were dumped show
        # their inclusive cost here (callgrind_control -d mid-run): skip them.
        if pct >= 99.0:
            continue
        items.append((cost, func, obj, classify(func, obj, src)))
    msgs = float(msgs)
    per = defaultdict(float)
    for cost, _, _, g in items:
        per[g] += cost
    counted = sum(per.values())
    print(f"callgrind: {total:,.0f} instructions for {msgs:,.0f} messages = "
          f"{total / msgs:,.0f} instructions per message ({counted / total * 100:.1f}% attributed)")
    print(f"\n{'group':<58} {'Ir/msg':>8} {'share':>7}")
    for g, c in sorted(per.items(), key=lambda x: -x[1]):
        print(f"{g:<58} {c / msgs:>8,.0f} {c / total * 100:>6.1f}%")
    top(items, 30, lambda c: f"{c / msgs:,.0f} Ir/msg")
    if incl_txt:
        want = ["lua_pcallk'2", "luaB_coresume", "l_conn_send", "l_conn_buffered", "luaL_checkudata",
                "luaC_step", "l_alloc", "luaF_newLclosure", "ws_conn_feed", "uv__read", "uv__write",
                "uv_try_write", "io__flush", "flush_conn", "on_message", "luaB_type", "l_utf8_valid",
                "uv__io_poll", "luaS_new", "lua_pushlstring", "luaB_corunning", "luaB_yieldable", "luaB_yield"]
        print("\ninclusive cost of selected entry points (Ir per message):")
        for line in open(incl_txt):
            m = rx.match(line)
            if m and m.group(4) in want:
                print(f"  {num(m.group(1)) / msgs:>8,.0f}  {m.group(4)}")


def do_perf(perf_txt, wsb_json):
    r = json.load(open(wsb_json))
    us_per_msg = r["server_cpu"] / r["msgs_per_s"] * 1e6 if r.get("msgs_per_s") and r.get("server_cpu", -1) > 0 else None
    rx = re.compile(r"^\s*([\d.]+)%\s+(\S+)\s+\[(.)\]\s+(\S+)")
    items = []
    for line in open(perf_txt):
        m = rx.match(line)
        if m:
            pct, obj, kind, func = float(m.group(1)), m.group(2), m.group(3), m.group(4)
            if kind == "k":
                obj = "[kernel]"
            items.append((pct, func, obj, classify(func, obj)))
    per = defaultdict(float)
    for pct, _, _, g in items:
        per[g] += pct
    print(f"perf: {r['msgs_per_s']:,.0f} msgs/s at server_cpu {r['server_cpu']:.2f} "
          f"(foreign_cpu {r.get('foreign_cpu')}) = {us_per_msg:.2f} µs CPU per message" if us_per_msg else "perf:")
    print(f"\n{'group':<58} {'share':>7} {'µs/msg':>7}")
    for g, c in sorted(per.items(), key=lambda x: -x[1]):
        us = f"{c / 100 * us_per_msg:.3f}" if us_per_msg else "-"
        print(f"{g:<58} {c:>6.1f}% {us:>7}")
    top(items, 30, lambda c: f"{c:.2f}%")


if __name__ == "__main__":
    if sys.argv[1] == "callgrind":
        do_callgrind(sys.argv[2], sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else None)
    else:
        do_perf(sys.argv[2], sys.argv[3])
