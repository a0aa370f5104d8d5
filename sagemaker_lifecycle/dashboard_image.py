"""dashboard-image: draw the dashboard's layout, from the JSON definition `make dashboard` puts, as a PNG.

    make dashboard-image [ARCH=split] [DASHBOARD_PNG=path]    (python -m sagemaker_lifecycle.dashboard_image)

Each widget is drawn at its x/y/width/height on CloudWatch's 24-column grid, with its title and the metrics it
charts (namespace, name, statistic; hidden inputs of metric math in grey, then the expressions, then the
alarm thresholds drawn as lines). Nothing is asked of AWS: the picture shows the layout, not data. The
default path is docs/images/dashboard-<ARCH>.png, the pictures docs/operations.md shows.
"""

from __future__ import annotations

import logging
import sys
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
from matplotlib.patches import Rectangle  # noqa: E402

from .cli import edge, parse_overrides  # noqa: E402
from .config import ROOT, Config  # noqa: E402
from .dashboard import dashboard_body, expressions, metric_lines  # noqa: E402

log = logging.getLogger(__name__)

INCHES_PER_COLUMN, INCHES_PER_ROW = 0.75, 0.42
LINE_ROWS = 0.36  # grid rows per line of 7-point text
TITLE_ROWS = 1.6


def widget_lines(widget: dict) -> list[tuple[str, str]]:
    """(text, colour) of each metric and expression a widget charts."""
    lines = []
    for line in metric_lines(widget):
        stage = f" [Stage={line.dimensions['Stage']}]" if "Stage" in line.dimensions else ""
        colour = "#879596" if line.options.get("visible") is False else "#16191f"
        lines.append((f"{line.namespace}: {line.name} {line.stat(widget)}{stage}", colour))
    for expression in expressions(widget):
        lines.append((f"= {expression['label']}: {expression['expression']}", "#0972d3"))
    for line in widget["properties"].get("annotations", {}).get("horizontal", []):
        lines.append((f"--- {line['label']} at {line['value']:g}", "#d13212"))
    return lines


def render(body: dict, path: Path, title: str) -> list[str]:
    """Draw `body`'s widgets into `path` (PNG); returns every text drawn, title first."""
    widgets = body["widgets"]
    rows = max(widget["y"] + widget["height"] for widget in widgets) + TITLE_ROWS
    figure = plt.figure(figsize=(24 * INCHES_PER_COLUMN, rows * INCHES_PER_ROW))
    axes = figure.add_axes((0, 0, 1, 1))
    axes.set_xlim(0, 24)
    axes.set_ylim(rows, 0)
    axes.axis("off")
    drawn = [title]
    axes.text(0.15, TITLE_ROWS / 2, title, fontsize=11, weight="bold", va="center")
    for widget in widgets:
        x, y, width, height = widget["x"], widget["y"] + TITLE_ROWS, widget["width"], widget["height"]
        if widget["type"] == "text":
            text = widget["properties"]["markdown"].lstrip("# ")
            axes.add_patch(Rectangle((x + 0.05, y + 0.05), width - 0.1, height - 0.1, facecolor="#232f3e"))
            axes.text(x + 0.2, y + height / 2, text, color="white", fontsize=9.5, weight="bold", va="center")
            drawn.append(text)
            continue
        axes.add_patch(
            Rectangle((x + 0.05, y + 0.05), width - 0.1, height - 0.1, facecolor="#fafafa", edgecolor="#aab7b8")
        )
        heading = widget["properties"]["title"]
        axes.text(x + 0.2, y + 0.45, heading, fontsize=8.5, weight="bold", va="center")
        drawn.append(heading)
        columns = int(width * INCHES_PER_COLUMN * 16)  # characters of 7-point text that fit the widget
        top = y + 1.0
        for text, colour in widget_lines(widget):
            for piece in textwrap.wrap(text, columns, subsequent_indent="    "):
                axes.text(x + 0.25, top, piece, fontsize=7, color=colour, va="center", family="monospace")
                top += LINE_ROWS
            drawn.append(text)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return drawn


def write_image(config: Config) -> int:
    """Build the dashboard body of ARCH (region: REGION, or us-east-1: it is not drawn) and draw it."""
    path = Path(config.get("DASHBOARD_PNG") or ROOT / "docs" / "images" / f"dashboard-{config.arch}.png")
    body = dashboard_body(config, config.get("REGION", "us-east-1"))
    graphs = sum(widget["type"] == "metric" for widget in body["widgets"])
    title = (
        f"CloudWatch dashboard {config.endpoint_name} (ARCH={config.arch}): {graphs} graphs, drawn from the JSON "
        "definition that `make dashboard` puts"
    )
    render(body, path, title)
    log.info("wrote %s (%d graphs)", path, graphs)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of `make dashboard-image`."""
    arguments = sys.argv[1:] if argv is None else argv
    return edge(lambda: write_image(Config.load(parse_overrides(arguments))))


if __name__ == "__main__":
    sys.exit(main())
