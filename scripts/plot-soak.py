#!/usr/bin/env python3
"""Draws the samples of scripts/bench-soak.sh: RSS and disk of every node against writes done.

    scripts/plot-soak.py docs/soak/soak.csv [docs/soak/soak.png]

Reads the CSV (node,role,elapsed_s,writes_done,rss_kib,peak_kib,disk_kib) and writes a PNG
with two panels, RSS in MiB and data directory in MiB, one line per node (etcd's members
dashed). The x axis is writes done; if a sample has none, it is seconds since the load
started. Needs matplotlib: without it, says so and exits 2.
"""
import csv
import os
import sys

try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot
except ImportError:
    print("plot-soak: matplotlib is missing: pip install matplotlib", file=sys.stderr)
    sys.exit(2)


def read(path):
    """Samples by node, in file order: {name: (role, [row, ...])}."""
    nodes = {}
    with open(path, newline="") as file:
        for row in csv.DictReader(file):
            nodes.setdefault(row["node"], (row["role"], []))[1].append(row)
    return nodes


# One colour family per role, so that eleven lines stay apart.
PALETTES = {
    "acceptor": "Blues",
    "learner": "Greens",
    "proposer": "Greys",
    "client": "Purples",
    "etcd": "Oranges",
}


def colours(nodes):
    """A colour per node: its role's colour map, darker for each further node of the role."""
    by_role = {}
    for name, (role, _) in nodes.items():
        by_role.setdefault(role, []).append(name)
    chosen = {}
    for role, names in by_role.items():
        palette = matplotlib.colormaps[PALETTES.get(role, "Reds")]
        for index, name in enumerate(names):
            chosen[name] = palette(0.5 + 0.45 * index / max(1, len(names) - 1))
    return chosen


def main():
    if len(sys.argv) not in (2, 3):
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        sys.exit(2)
    path = sys.argv[1]
    output = sys.argv[2] if len(sys.argv) == 3 else os.path.splitext(path)[0] + ".png"
    nodes = read(path)
    by_writes = all(row["writes_done"] for _, rows in nodes.values() for row in rows)
    x_field, x_label, x_scale = (
        ("writes_done", "writes done (millions)", 1e6)
        if by_writes
        else ("elapsed_s", "seconds since the load started", 1)
    )
    colour = colours(nodes)
    figure, (rss_axes, disk_axes) = pyplot.subplots(2, 1, figsize=(10, 8), sharex=True)
    for name, (role, rows) in nodes.items():
        x = [float(row[x_field]) / x_scale for row in rows]
        style = "--" if role == "etcd" else "-"
        rss = [int(row["rss_kib"]) / 1024 for row in rows]
        rss_axes.plot(x, rss, style, marker=".", color=colour[name], label=name)
        disk_rows = [(x_value, row) for x_value, row in zip(x, rows) if row["disk_kib"]]
        if disk_rows:
            disk_axes.plot(
                [x_value for x_value, _ in disk_rows],
                [int(row["disk_kib"]) / 1024 for _, row in disk_rows],
                style,
                marker=".",
                color=colour[name],
                label=name,
            )
    rss_axes.set_ylabel("RSS (MiB)")
    rss_axes.set_title("Resident memory of each node")
    disk_axes.set_ylabel("data directory (MiB)")
    disk_axes.set_title("Disk used by each node's data directory")
    disk_axes.set_xlabel(x_label)
    for axes in (rss_axes, disk_axes):
        axes.grid(True, alpha=0.3)
        axes.set_ylim(bottom=0)
        axes.legend(fontsize="small", ncol=2, loc="upper left")
    figure.tight_layout()
    figure.savefig(output, dpi=100)
    print(f"plot-soak: wrote {output}", file=sys.stderr)


if __name__ == "__main__":
    main()
