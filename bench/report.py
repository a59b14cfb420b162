#!/usr/bin/env python3
"""Render bench/run's results file as a report a person would rather look at
than read: self-contained HTML with inline SVG bar charts (no scripts, no
external assets), or Markdown with the same figures as tables.

usage: bench/report.py RESULTS.json OUT.html|OUT.md

The results file holds one section per benchmark (see bench/README.md):
restore_* sections come from `hiberbox bench restore --json`, "repo" from
bench/repo-bench.sh, "fs" from bench/fs-bench.sh, "sandbox_wake" from
bench/sandbox-wake.sh.  A section that failed holds {"error": "..."} and is
shown as such.  Unknown sections are listed with their numbers.
"""
import html
import json
import sys

COLORS = {"hiberbox": "#2f7ed8", "tar_zstd": "#8c8c8c", "squashfs_overlay": "#e4a33b",
          "cp_a": "#5bb06b", "native": "#5bb06b", "overlay_squashfuse": "#e4a33b"}
LABELS = {"hiberbox": "hiberbox", "tar_zstd": "tar+zstd", "squashfs_overlay": "squashfs+overlay",
          "cp_a": "cp -a", "native": "native", "overlay_squashfuse": "fuse-overlayfs+squashfuse"}
ROWS = [("sleep_full", "sleep (full snapshot)"), ("sleep_incremental", "sleep (after a small change)"),
        ("wake_cold", "wake, cold cache"), ("wake_warm", "wake, warm cache"),
        ("first_command", "first command, cold"), ("restore", "full restore")]


def fmt_s(s):
    return "%.0f ms" % (s * 1000) if s < 1 else "%.2f s" % s


def fmt_ratio(r):
    return "-" if not r else ("%.0fx" % r if r >= 10 else "%.2fx" % r)


class Bar:
    def __init__(self, label, value, text, color, lo=None, hi=None, note=""):
        self.label, self.value, self.text, self.color = label, value, text, color
        self.lo, self.hi, self.note = lo, hi, note


def svg_chart(bars):
    """Horizontal bars, one per entry; value None draws the note instead."""
    lw, bw, rh, tw = 190, 400, 28, 230
    scale = max([b.hi or b.value or 0 for b in bars] + [1e-12])
    out = ["<svg xmlns='http://www.w3.org/2000/svg' width='%d' height='%d' role='img'>"
           % (lw + bw + tw, len(bars) * rh + 4)]
    for i, b in enumerate(bars):
        y = i * rh
        out.append("<text x='%d' y='%d' text-anchor='end' font-size='13'>%s</text>"
                   % (lw - 8, y + 18, html.escape(b.label)))
        if b.value is None:
            out.append("<text x='%d' y='%d' font-size='12' fill='#999'>%s</text>"
                       % (lw, y + 18, html.escape(b.note)))
            continue
        w = max(1.0, b.value / scale * bw)
        out.append("<rect x='%d' y='%d' width='%.1f' height='18' rx='3' fill='%s'/>"
                   % (lw, y + 5, w, b.color))
        if b.lo is not None and b.hi is not None and b.hi > b.lo:
            x0, x1 = lw + b.lo / scale * bw, lw + b.hi / scale * bw
            out.append("<line x1='%.1f' x2='%.1f' y1='%d' y2='%d' stroke='#333'/>"
                       "<line x1='%.1f' x2='%.1f' y1='%d' y2='%d' stroke='#333'/>"
                       "<line x1='%.1f' x2='%.1f' y1='%d' y2='%d' stroke='#333'/>"
                       % (x0, x1, y + 14, y + 14, x0, x0, y + 9, y + 19, x1, x1, y + 9, y + 19))
        out.append("<text x='%d' y='%d' font-size='13'>%s</text>"
                   % (lw + bw + 8, y + 18, b.text))
    out.append("</svg>")
    return "\n".join(out)


class Doc:
    """Collects sections; renders HTML or Markdown."""

    def __init__(self):
        self.parts = []  # (kind, payload)

    def h1(self, t):
        self.parts.append(("h1", t))

    def h2(self, t):
        self.parts.append(("h2", t))

    def p(self, t, cls=""):
        self.parts.append(("p", (t, cls)))

    def chart(self, title, bars):
        self.parts.append(("chart", (title, bars)))

    def html(self):
        o = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
             "<title>hiberbox benchmarks</title><style>",
             "body{font-family:system-ui,sans-serif;max-width:880px;margin:2em auto;color:#222}",
             "h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}",
             "h3{font-size:1em;margin:1.2em 0 .2em}.help{color:#666;font-size:.85em}",
             ".big{font-size:1.1em;background:#eef5fc;padding:.6em 1em;border-radius:6px}",
             ".err{color:#b42318}</style></head><body>"]
        for kind, x in self.parts:
            if kind == "h1":
                o.append("<h1>%s</h1>" % html.escape(x))
            elif kind == "h2":
                o.append("<h2>%s</h2>" % html.escape(x))
            elif kind == "p":
                cls = " class='%s'" % x[1] if x[1] else ""
                o.append("<p%s>%s</p>" % (cls, html.escape(x[0]).replace("\n", "<br>")))
            else:
                o.append("<h3>%s</h3>" % html.escape(x[0]))
                o.append(svg_chart(x[1]))
        o.append("</body></html>")
        return "\n".join(o) + "\n"

    def markdown(self):
        o = []
        for kind, x in self.parts:
            if kind == "h1":
                o.append("# %s\n" % x)
            elif kind == "h2":
                o.append("\n## %s\n" % x)
            elif kind == "p":
                o.append(x[0].replace("\n", "  \n") + "\n")
            else:
                o.append("\n**%s**\n\n| | value | |\n|---|---:|---|" % x[0])
                scale = max([b.value or 0 for b in x[1]] + [1e-12])
                for b in x[1]:
                    if b.value is None:
                        o.append("| %s | %s | |" % (b.label, b.note))
                    else:
                        o.append("| %s | %s | %s |" % (b.label, b.text.replace("<", "&lt;"),
                                                       "\u2588" * max(1, round(b.value / scale * 30))))
                o.append("")
        return "\n".join(o) + "\n"


def restore_section(doc, title, r):
    doc.h2(title)
    if "error" in r:
        doc.p("failed: " + r["error"], "err")
        return
    doc.p("%d files, %.1f MB; %s repository; link: %s; %d run(s); page cache %s%s.\n"
          "Bars: median; whiskers: min..max; ratios: tar+zstd median / this median (higher is faster)."
          % (r["tree"]["files"], r["tree"]["bytes"] / 1e6, r["repository"], r["link"], r["runs"],
             r["page_cache"], "; on " + r["work_fs"] if r.get("work_fs") else ""), "help")
    fc = r["figures"].get("first_command", {}).get("hiberbox", {})
    if fc.get("vs_tar_zstd"):
        doc.p("First command after a cold wake: %s %s than the .tar.zst route."
              % (fmt_ratio(fc["vs_tar_zstd"]), "sooner" if fc["vs_tar_zstd"] >= 1 else "later (slower)"),
              "big")
    for key, label in ROWS:
        row = r["figures"].get(key, {})
        bars = []
        for m in ("hiberbox", "tar_zstd", "squashfs_overlay", "cp_a"):
            c = row.get(m)
            if c is None:
                continue
            if "skipped" in c:
                bars.append(Bar(LABELS[m], None, "", COLORS[m], note="skipped: " + c["skipped"]))
                continue
            ratio = c.get("vs_tar_zstd")
            txt = fmt_s(c["median_s"])
            if m == "tar_zstd":
                txt += "  (baseline)"
            elif ratio:
                txt += "  %s %s" % (fmt_ratio(ratio), "faster" if ratio >= 1 else "(slower)")
            bars.append(Bar(LABELS[m], c["median_s"], txt, COLORS[m], c["min_s"], c["max_s"]))
        if bars:
            doc.chart(label, bars)
    for n in r.get("notes", []):
        doc.p("note: " + n, "help")


def repo_section(doc, r):
    doc.h2("repository throughput (bench/repo-bench.sh)")
    if "error" in r:
        doc.p("failed: " + r["error"], "err")
        return
    doc.p("%d files, %.0f MB; %d run(s), medians; page cache %s%s."
          % (r["tree"]["files"], r["tree"]["bytes"] / 1e6, r["runs"], r["page_cache"],
             "; extracts and restores onto " + r["output_fs"] if r.get("output_fs") else ""),
          "help")
    med = r["seconds_median"]
    pairs = [("snapshot vs tar create", [("tar -I zstd -cf", "tar_create", "tar_zstd"),
                                          ("snapshot create", "hb_create", "hiberbox"),
                                          ("unchanged snapshot", "hb_unchanged", "hiberbox")]),
             ("restore vs tar extract", [("tar -I zstd -xf", "tar_extract", "tar_zstd"),
                                          ("snapshot restore", "hb_restore", "hiberbox")])]
    for title, items in pairs:
        bars = []
        for label, key, color in items:
            if key in med:
                runs = r.get("seconds_all", {}).get(key, [])
                bars.append(Bar(label, med[key], "%s  %.0f MB/s" % (fmt_s(med[key]), r["tree"]["bytes"] / 1e6 / med[key]),
                                COLORS[color], min(runs) if runs else None, max(runs) if runs else None))
        doc.chart(title, bars)
    rat = r.get("ratios", {})
    met = r.get("targets_met", {})
    doc.p("; ".join("%s = %.2f%s" % (k, v, "" if k not in met else (" (target %s: %s)" % (
        r["targets"][k], "met" if met[k] else "NOT met"))) for k, v in sorted(rat.items())), "help")


def fs_section(doc, r):
    doc.h2("filesystem metadata and data paths (bench/fs-bench.sh)")
    if "error" in r:
        doc.p("failed: " + r["error"], "err")
        return
    doc.p("%d files; %d MB file for reads; %d run(s), medians, warm." % (r["files"], r["read_mb"], r["runs"]), "help")
    for key, label in (("stat_ms", "find + stat of every file (ms)"), ("git_status_ms", "git status (ms)"),
                       ("read_all_ms", "tar c of every file, warm (ms)"),
                       ("untar_ms", "untar onto the filesystem (ms)"),
                       ("npm_ci_ms", "npm ci from a warm cache onto the filesystem (ms)"),
                       ("mount_ms", "mount to first ls (ms)")):
        bars = []
        for m in ("native", "hiberbox", "overlay_squashfuse"):
            v = r.get(m, {}).get(key)
            try:
                v = float(v)
            except (TypeError, ValueError):
                continue
            base = r.get("native", {}).get(key)
            txt = "%.0f ms" % v
            if m != "native" and base:
                txt += "  %.2fx native" % (v / float(base)) if float(base) > 0 else ""
            bars.append(Bar(LABELS[m], v, txt, COLORS[m]))
        if bars:
            doc.chart(label, bars)
    bars = []
    for m, key, label in (("native", "read_warm_mbps", "native, warm"), ("hiberbox", "read_warm_mbps", "hiberbox, warm"),
                          ("hiberbox", "read_cold_mbps", "hiberbox, cold")):
        v = r.get(m, {}).get(key)
        if v is not None:
            bars.append(Bar(label, float(v), "%.0f MB/s" % float(v), COLORS[m]))
    if bars:
        doc.chart("sequential read (MB/s, longer is better)", bars)
    bars = []
    for m, key, label in (("native", "cp_big_ms", "native"), ("hiberbox", "cp_big_lower_ms", "hiberbox, from the repository"),
                          ("hiberbox", "cp_big_upper_ms", "hiberbox, from an upper file")):
        v = r.get(m, {}).get(key)
        if v is not None:
            bars.append(Bar(label, float(v), "%.0f ms" % float(v), COLORS[m]))
    if len(bars) > 1:
        doc.chart("cp of the big file inside the filesystem, then sync (ms)", bars)
    h, n = r.get("hiberbox", {}), r.get("native", {})
    if h.get("transport"):
        doc.p("requests came through %s; untar through /dev/fuse: %s ms; on a busy host (a CPU-bound process "
              "per CPU): native %s ms, hiberbox %s ms, through /dev/fuse %s ms"
              % (h["transport"], h.get("untar_devfuse_ms", "-"), n.get("untar_busy_ms", "-"),
                 h.get("untar_busy_ms", "-"), h.get("untar_devfuse_busy_ms", "-")), "help")
    one_cpu = r.get("hiberbox", {}).get("untar_1cpu_ms")
    if one_cpu not in (None, "-") and r.get("native", {}).get("untar_ms"):
        doc.p("untar with the fs and tar pinned to one CPU: %s ms, %.2fx native (the gap to the unpinned figure "
              "is the cost of waking the other CPU for each request and reply); untars on: %s"
              % (one_cpu, float(one_cpu) / float(r["native"]["untar_ms"]), r.get("untar_fs", "?")), "help")
    if "rss_mib" in r.get("hiberbox", {}):
        doc.p("hiberbox fs process RSS: %s MiB; commit after untar: %s ms"
              % (r["hiberbox"]["rss_mib"], r["hiberbox"].get("commit_ms", "?")), "help")
    if "mount_50k_ms" in r.get("hiberbox", {}):
        doc.p("50 000-file snapshot: mount to first ls %s ms (median of %d), fs process RSS after a stat "
              "of every file %s MiB (issue 3: under 100 ms, under 64 MB)"
              % (r["hiberbox"]["mount_50k_ms"], r["runs"] + 2, r["hiberbox"].get("rss_50k_mib", "?")), "help")


def sandbox_section(doc, r):
    doc.h2("sandbox wake (bench/sandbox-wake.sh)")
    if "error" in r:
        doc.p("failed: " + r["error"], "err")
        return
    if "setup_ms" in r:
        doc.p("%s workspace files, %s packages; medians. Figure of merit: setup / (wake + first exec) = %sx."
              % (r.get("workspace_files", "?"), r.get("packages", "?"), r.get("ratio", "?")), "help")
        bars = [Bar(label, float(r[k]), "%.0f ms" % float(r[k]), color) for label, k, color in (
            ("setup: clone + npm install", "setup_ms", COLORS["tar_zstd"]),
            ("wake + first exec", "wake_first_exec_ms", COLORS["hiberbox"]),
            ("wake (daemon side)", "wake_ms", COLORS["hiberbox"]),
            ("sleep", "sleep_ms", COLORS["cp_a"])) if k in r]
        doc.chart("time to a working sandbox (ms)", bars)
    if r.get("output"):
        doc.p(r["output"], "help")


def other_section(doc, name, r):
    doc.h2(name)
    if isinstance(r, dict) and "error" in r:
        doc.p("failed: " + r["error"], "err")
        return
    doc.p(json.dumps(r, indent=1, sort_keys=True)[:4000], "help")


def render(res):
    doc = Doc()
    doc.h1("hiberbox benchmarks")
    doc.p("%s UTC; %s; commit %s%s" % (res.get("date_utc", "?"), res.get("machine", "?"), res.get("commit", "?"),
                                      "; --quick" if res.get("quick") else ""), "help")
    for name, title in (("restore_local", "sleep and wake, local repository"),
                        ("restore_s3", "sleep and wake, S3 (s3rver on loopback)"),
                        ("restore_s3_wan", "sleep and wake, S3 over an emulated WAN link")):
        if name in res:
            restore_section(doc, title, res[name])
    if "repo" in res:
        repo_section(doc, res["repo"])
    if "fs" in res:
        fs_section(doc, res["fs"])
    if "sandbox_wake" in res:
        sandbox_section(doc, res["sandbox_wake"])
    for name in sorted(res):
        if name not in ("restore_local", "restore_s3", "restore_s3_wan", "repo", "fs", "sandbox_wake", "date_utc",
                        "machine", "commit", "quick") and isinstance(res[name], (dict, list)):
            other_section(doc, name, res[name])
    return doc


def main():
    if len(sys.argv) != 3 or not sys.argv[2].endswith((".html", ".htm", ".md")):
        sys.exit("usage: report.py RESULTS.json OUT.html|OUT.md")
    with open(sys.argv[1]) as f:
        res = json.load(f)
    doc = render(res)
    with open(sys.argv[2], "w") as f:
        f.write(doc.markdown() if sys.argv[2].endswith(".md") else doc.html())


if __name__ == "__main__":
    main()
