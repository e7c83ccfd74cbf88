"""results.csv, results.json, results.md and the gnuplot PNGs of one scripts/bench run."""
import csv
import json
import os
import shutil
import subprocess


def fmt(v, unit=""):
    if v is None:
        return "–"
    if isinstance(v, float):
        a = abs(v)
        s = f"{v:.3g}" if a < 0.01 else f"{v:.2f}" if a < 100 else f"{v:,.0f}"
    else:
        s = f"{v:,}" if isinstance(v, int) else str(v)
    return f"{s} {unit}".strip()


def write_csv(path, rows):
    keys = sorted({k for r in rows for k in r["params"]})
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["section", "metric", "value", "unit"] + keys)
        for r in rows:
            w.writerow([r["section"], r["metric"], r["value"], r["unit"]] + [r["params"].get(k, "") for k in keys])


def write_markdown(path, meta, compare, notes):
    lines = [f"# carsync benchmark ({meta['date']})", "",
             f"{meta['host']}; {meta['cores']} cores; carsync {meta['commit']} ({meta['binaries']}); "
             f"sections: {', '.join(meta['sections'])}{' (--quick)' if meta['quick'] else ''}; "
             f"wall time {meta['wall_s']:.0f} s; load average before/after {meta['load_before']} / {meta['load_after']}.",
             "",
             "Every figure is beside its yardstick measured in the same run; ratio = figure / yardstick "
             "(for times, below 1 is faster). Timings come from carsync's `/v1/events` stream (receipt "
             "time of each phase change, from the `request.json` rename) and its bench binaries' JSON.", "",
             "| section | figure | value | yardstick | yardstick value | ratio | target | met |",
             "|---|---|---|---|---|---|---|---|"]
    cell = lambda t: "–" if t is None else str(t).replace("|", "\\|")
    for c in compare:
        met = "–" if c["met"] is None else ("met" if c["met"] else "**missed**")
        ratio = "–" if c["ratio"] is None else f"{c['ratio']:.2f}"
        lines.append(f"| {c['section']} | {cell(c['figure'])} | {fmt(c['value'], c['unit'])} | {cell(c['yardstick'])} | "
                     f"{fmt(c['yardstick_value'], c['unit'])} | {ratio} | {cell(c['target'])} | {met} |")
    if notes:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in notes]
    lines.append("")
    with open(path, "w") as f:
        f.write("\n".join(lines))


def plot(out, ctx):
    """One PNG per relation; the data files stay beside them. Skipped without gnuplot."""
    if not shutil.which("gnuplot"):
        return ["gnuplot not found: no plots (scripts/bootstrap installs gnuplot-nox)"]
    jobs = []
    lat = getattr(ctx, "latency_summary", None)
    if lat:
        from sections import pct
        dat = os.path.join(out, "latency.dat")
        with open(dat, "w") as f:
            f.write("# instances claim_p50 claim_p99 claim_max publish_p50 publish_p99 publish_max rss_mib hwm_mib\n")
            for n in sorted(lat):
                r = lat[n]
                f.write(f"{n} {pct(r['claim'], .5)} {pct(r['claim'], .99)} {max(r['claim'])} "
                        f"{pct(r['publish'], .5)} {pct(r['publish'], .99)} {max(r['publish'])} "
                        f"{r['rss'] / 1048576} {r['hwm'] / 1048576}\n")
        jobs.append(f"""
set output '{out}/latency_vs_instances.png'
set title 'request.json rename -> claim / durable publish (events), embedded backend'
set xlabel 'provider instances'; set ylabel 'ms'; set logscale x; set key outside right top
plot '{dat}' u 1:2 w lp t 'claim p50', '' u 1:3 w lp t 'claim p99', '' u 1:5 w lp t 'publish p50', '' u 1:6 w lp t 'publish p99', '' u 1:7 w lp t 'publish max'
unset logscale
set output '{out}/memory_vs_instances.png'
set title 'carsyncd memory vs instances'
set xlabel 'provider instances'; set ylabel 'MiB'; set logscale x
plot '{dat}' u 1:8 w lp t 'VmRSS after the requests', '' u 1:9 w lp t 'VmHWM'
unset logscale
""")
    tls = getattr(ctx, "size_timelines", None)
    if tls:
        series = {}
        for t in tls:
            series.setdefault(f"{t['fmt']} {t['backend']}", {}).setdefault(t["bytes"], []).append(t["total"])
        plots = []
        for i, (name, pts) in enumerate(sorted(series.items())):
            dat = os.path.join(out, f"sizes-{i}.dat")
            with open(dat, "w") as f:
                f.write(f"# {name}: snapshot MiB, publish->applied s (median)\n")
                for b in sorted(pts):
                    v = sorted(pts[b])
                    f.write(f"{b / 1048576} {v[len(v) // 2]}\n")
            plots.append(f"'{dat}' u 1:2 w lp t '{name}'")
        jobs.append(f"""
set output '{out}/applied_vs_size.png'
set title 'publish -> applied vs snapshot size (events)'
set xlabel 'snapshot MiB'; set ylabel 's'; set logscale xy; set key outside right top
plot {', '.join(plots)}
unset logscale
""")
    fo = getattr(ctx, "fanout", None)
    if fo:
        dat = os.path.join(out, "fanout.dat")
        with open(dat, "w") as f:
            f.write("# consumers first_applied_s last_applied_s served_MB\n")
            for n in sorted(fo):
                f.write(f"{n} {fo[n]['first']} {fo[n]['last']} {fo[n]['served'] / 1e6}\n")
        jobs.append(f"""
set output '{out}/fanout_vs_consumers.png'
set title 'one provider to N consumers through carsync-devnode'
set xlabel 'consumers'; set ylabel 's from the request'; set key outside right top
plot '{dat}' u 1:2 w lp t 'first applied', '' u 1:3 w lp t 'last applied'
""")
    dl = getattr(ctx, "delta", None)
    if dl and dl.get("reps"):
        bars = [("1: zst", dl["reps"][0]["transfer"])]
        if dl.get("gz"):
            bars.append(("1: gz", dl["gz"]["transfer"]))
        bars += [("2: log append", dl["log_transfer"]), ("3: 5 skipped", dl["skip"]["transfer"])]
        dat = os.path.join(out, "delta.dat")
        with open(dat, "w") as f:
            f.write("# case fetched_MB archive_MB (the consumer's received history transfer)\n")
            for label, tr in bars:
                f.write(f'"{label}" {tr["fetched_bytes"] / 1e6} {tr["archive_bytes"] / 1e6}\n')
        jobs.append(f"""
set output '{out}/delta_fetched.png'
set title 'delta transfer: bytes the consumer fetched vs the full archive (received history)'
set xlabel 'case'; set ylabel 'MB'; set logscale y; set key outside right top
set style data histograms; set style histogram clustered gap 1; set style fill solid 0.8 border -1
plot '{dat}' u 2:xtic(1) t 'fetched', '' u 3 t 'full archive'
unset logscale; set style data lines
""")
        if dl.get("rss"):
            dat = os.path.join(out, "delta-rss.dat")
            t0 = dl["rss"][0][0]
            with open(dat, "w") as f:
                f.write("# s since the first sample, delta-cons VmRSS MiB (every 50 ms)\n")
                for t, v in dl["rss"]:
                    f.write(f"{t - t0:.3f} {v / 1048576:.2f}\n")
            jobs.append(f"""
set output '{out}/delta_consumer_rss.png'
set title 'delta section: the consumer carsyncd VmRSS over the run (all its applies)'
set xlabel 's'; set ylabel 'MiB'; set key off
plot '{dat}' u 1:2 w l
""")
    if not jobs:
        return []
    script = "set terminal pngcairo size 900,560 noenhanced\nset grid\n" if _has_cairo() else \
        "set terminal png size 900,560 noenhanced\nset grid\n"
    script += "".join(jobs)
    path = os.path.join(out, "plots.gp")
    with open(path, "w") as f:
        f.write(script)
    r = subprocess.run(["gnuplot", path], capture_output=True, text=True)
    return [] if r.returncode == 0 else [f"gnuplot failed: {r.stderr.strip()[:300]}"]


def _has_cairo():
    r = subprocess.run(["gnuplot", "-e", "set terminal"], capture_output=True, text=True)
    return "pngcairo" in (r.stdout + r.stderr)


def write_all(out, ctx, res, meta):
    os.makedirs(out, exist_ok=True)
    notes = list(res.notes) + plot(out, ctx)
    write_csv(os.path.join(out, "results.csv"), res.rows)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump({"meta": meta, "compare": res.compare, "rows": res.rows, "notes": notes}, f, indent=1)
    write_markdown(os.path.join(out, "results.md"), meta, res.compare, notes)
