"""SVG plots of a casdisk benchmark report, drawn with gnuplot.

Two plots beside BASE.md / BASE.json:

  BASE-ratios.svg  throughput of casdisk against its peer for every
                   workload, one bar per pairing (1 = as fast as the peer)
  BASE-size.svg    the allocated size of each backend's storage over the
                   time of the run, sampled every 0.5 s during every write
                   job, with the live data the job left

gnuplot (Debian's gnuplot-nox) draws them; without it, nothing is drawn
and write() says so.  The data files gnuplot reads are written beside the
plots and removed after.
"""

import os
import shutil
import subprocess

MiB = 1 << 20


def _quote(s):
    return '"%s"' % s.replace('"', "'")


def _ratios(res, base):
    pairings = res.get("pairings") or []
    if not pairings:
        return None
    workloads = []
    for p in pairings:
        for w in p["ratios"]:
            if w not in workloads:
                workloads.append(w)
    dat = base + "-ratios.dat"
    with open(dat, "w") as f:
        f.write("workload " + " ".join(_quote(p["title"]) for p in pairings) + "\n")
        for w in workloads:
            row = []
            for p in pairings:
                v = (p["ratios"].get(w) or {}).get("throughput")
                row.append("%.4f" % v if v is not None else "NaN")
            f.write("%s %s\n" % (_quote(w), " ".join(row)))
    svg = base + "-ratios.svg"
    cols = len(pairings)
    script = "\n".join([
        "set terminal svg size 1000,%d dynamic font 'sans,11'" % (260 + 28 * len(workloads)),
        "set output %s" % _quote(svg),
        "set title 'casdisk throughput / peer (1 = as fast; higher is better for casdisk)'",
        "set style data histograms",
        "set style histogram clustered gap 1",
        "set style fill solid 0.8 border -1",
        "set key top left",
        "set grid ytics",
        "set yrange [0:*]",
        "set xtics rotate by -35 left",
        "set rmargin 14",
        "set bmargin 9",
        "set arrow from graph 0, first 1 to graph 1, first 1 nohead dt 2 lw 1.5",
        "plot " + ", ".join("%s using %d:xtic(1) title columnheader(%d)" % (
            _quote(dat), i + 2, i + 2) for i in range(cols)),
    ])
    return dat, svg, script


def _size(res, base):
    runs = [r for r in res.get("runs") or [] if r.get("size_series")]
    if not runs:
        return None
    t0 = min(r["size_series"][0][0] for r in runs)
    backends = []
    for r in runs:
        if r["backend"] not in backends:
            backends.append(r["backend"])
    dat = base + "-size.dat"
    with open(dat, "w") as f:
        # One gnuplot data set per backend (blank lines between jobs);
        # the last set holds the live data of every job, over its time.
        for b in backends:
            f.write("# %s\n" % b)
            for r in runs:
                if r["backend"] != b:
                    continue
                for t, alloc in r["size_series"]:
                    f.write("%.2f %.2f\n" % (t - t0, alloc / MiB))
                f.write("\n")
            f.write("\n")
        f.write("# live data\n")
        for r in runs:
            if r.get("live_bytes"):
                s = r["size_series"]
                f.write("%.2f %.2f\n%.2f %.2f\n\n" % (s[0][0] - t0, r["live_bytes"] / MiB,
                                                       s[-1][0] - t0, r["live_bytes"] / MiB))
    svg = base + "-size.svg"
    plots = ["%s index %d with lines lw 1.5 title %s" % (_quote(dat), i, _quote(b))
             for i, b in enumerate(backends)]
    plots.append("%s index %d with lines lw 2 dt 2 lc 'black' title 'live data'" % (
        _quote(dat), len(backends)))
    script = "\n".join([
        "set terminal svg size 1000,500 dynamic font 'sans,11'",
        "set output %s" % _quote(svg),
        "set title 'allocated size of each backend during the write jobs (sampled every 0.5 s)'",
        "set xlabel 'seconds into the run'",
        "set ylabel 'MiB allocated'",
        "set key top left",
        "set grid",
        "plot " + ", ".join(plots),
    ])
    return dat, svg, script


def write(res, base, log=print):
    """Draw BASE-ratios.svg and BASE-size.svg; returns the paths drawn."""
    gnuplot = shutil.which("gnuplot")
    if gnuplot is None:
        log("plots: gnuplot not found (Debian: gnuplot-nox): no SVG plots")
        return []
    drawn = []
    for make in (_ratios, _size):
        job = make(res, base)
        if job is None:
            continue
        dat, svg, script = job
        try:
            r = subprocess.run([gnuplot], input=script, text=True, capture_output=True,
                               timeout=60)
        finally:
            os.unlink(dat)
        if r.returncode != 0 or not os.path.exists(svg):
            log("plots: gnuplot failed for %s: %s" % (os.path.basename(svg), r.stderr.strip()))
            continue
        drawn.append(svg)
    if drawn:
        log("plots: " + " and ".join(drawn))
    return drawn
