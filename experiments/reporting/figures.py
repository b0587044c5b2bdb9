"""A run's charts as files for papers: IoU against latency and the pooled precision-recall curves, as
SVG (text, scalable) and PNG (Pillow), drawn from one list of shapes so both show the same thing.

Data: `experiments.reporting.charts.chart_data` (what the page's charts show); the PR chart also marks each
detector's point at the leaderboard's threshold (pooled recall, precision). No matplotlib: the
shapes are few and drawn by hand.
"""

import io
import itertools
from dataclasses import dataclass, field
from xml.sax.saxutils import escape

from experiments.models import Run
from experiments.reporting.charts import chart_data

CHARTS = {"scatter": "IoU against latency", "pr": "Precision-recall (pooled)"}
FORMATS = {"svg": "image/svg+xml", "png": "image/png"}
WIDTH, HEIGHT = 640, 420
LEFT, RIGHT, TOP, BOTTOM = 64, 170, 40, 56  # margins; the legend sits on the right
FONT = 12


@dataclass
class Figure:
    title: str
    shapes: list = field(default_factory=list)

    def line(self, points, colour="#000000", width=1.0, dash=False):
        self.shapes.append(("line", [(float(x), float(y)) for x, y in points], colour, width, dash))

    def circle(self, x, y, r, fill, stroke="none", stroke_width=1.0):
        self.shapes.append(("circle", float(x), float(y), float(r), fill, stroke, stroke_width))

    def text(self, x, y, text, anchor="start", size=FONT, rotate=False):
        self.shapes.append(("text", float(x), float(y), str(text), anchor, size, rotate))


def _axes(figure: Figure, x_range, y_range, x_label: str, y_label: str):
    """Frame, ticks and labels; returns the data -> pixel mapping."""
    (x0, x1), (y0, y1) = x_range, y_range
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def to_px(x, y):
        return LEFT + (x - x0) / (x1 - x0) * plot_w, TOP + (1 - (y - y0) / (y1 - y0)) * plot_h

    right, bottom = LEFT + plot_w, TOP + plot_h
    figure.line([(LEFT, TOP), (right, TOP), (right, bottom), (LEFT, bottom), (LEFT, TOP)], "#444444")
    for i in range(6):
        xv, yv = x0 + (x1 - x0) * i / 5, y0 + (y1 - y0) * i / 5
        px, _ = to_px(xv, y0)
        _, py = to_px(x0, yv)
        figure.line([(px, bottom), (px, bottom + 5)], "#444444")
        figure.line([(LEFT - 5, py), (LEFT, py)], "#444444")
        figure.line([(LEFT, py), (right, py)], "#e5e5e5")
        figure.text(px, bottom + 18, _tick(xv), "middle")
        figure.text(LEFT - 8, py + 4, _tick(yv), "end")
    figure.text(LEFT + plot_w / 2, HEIGHT - 14, x_label, "middle")
    figure.text(16, TOP + plot_h / 2, y_label, "middle", rotate=True)
    figure.text(LEFT, 22, figure.title, "start", size=14)
    return to_px


def _tick(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 10 else f"{value:.2f}"


def _legend(figure: Figure, entries):
    x, y = WIDTH - RIGHT + 14, TOP + 8
    for label, colour, dashed in entries:
        if dashed:
            figure.line([(x, y), (x + 18, y)], colour, 1.5, dash=True)
        else:
            figure.circle(x + 9, y, 5, colour)
        figure.text(x + 24, y + 4, label[:22])
        y += 18


def scatter_figure(data: dict) -> Figure:
    figure = Figure(CHARTS["scatter"])
    points = data["scatter"]
    max_latency = max([p["latency"] for p in points] or [1.0]) * 1.1 or 1.0
    max_memory = max([p["memory"] or 0 for p in points] or [0])
    to_px = _axes(figure, (0.0, max_latency), (0.0, 1.0), "median latency per pair (ms, batch 1)", "IoU")
    front = sorted((p for p in points if p["pareto"]), key=lambda p: p["latency"])
    if len(front) > 1:
        figure.line([to_px(p["latency"], p["iou"]) for p in front], "#000000", 1.0, dash=True)
    for p in points:
        r = 5 + 12 * (p["memory"] / max_memory) ** 0.5 if p["memory"] and max_memory else 6
        figure.circle(*to_px(p["latency"], p["iou"]), r, p["colour"], "#000000" if p["pareto"] else p["colour"], 1.5)
    entries = [(p["detector"], p["colour"], False) for p in points]
    if len(front) > 1:
        entries.append(("Pareto front", "#000000", True))
    if not points:
        figure.text(LEFT + 20, TOP + 30, "no detector with both IoU and latency")
    _legend(figure, entries)
    return figure


def pr_figure(data: dict, points: dict) -> Figure:
    """PR curves; `points` maps a detector to its (recall, precision) at the leaderboard's threshold."""
    figure = Figure(CHARTS["pr"])
    to_px = _axes(figure, (0.0, 1.0), (0.0, 1.0), "recall", "precision")
    for curve in data["pr_curves"]:
        figure.line([to_px(r, p) for r, p in zip(curve["recall"], curve["precision"], strict=True)], curve["colour"], 2)
        point = points.get(curve["detector"])
        if point and None not in point:
            figure.circle(*to_px(*point), 5, curve["colour"], "#000000", 1.5)
    if not data["pr_curves"]:
        figure.text(LEFT + 20, TOP + 30, "needs labelled pairs")
    _legend(figure, [(c["detector"], c["colour"], False) for c in data["pr_curves"]])
    return figure


def _figure(run: Run, name: str) -> Figure:
    data = chart_data(run)
    if name == "scatter":
        return scatter_figure(data)
    points = {
        row["detector"]: ((row.get("pooled") or {}).get("recall"), (row.get("pooled") or {}).get("precision"))
        for row in (run.leaderboard or {}).get("detectors", [])
        if not row.get("failed")
    }
    return pr_figure(data, points)


def to_svg(figure: Figure) -> str:
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'role="img" font-family="sans-serif"><title>{escape(figure.title)}</title>',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>',
    ]
    for shape in figure.shapes:
        kind = shape[0]
        if kind == "line":
            _, points, colour, width, dash = shape
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            dashes = ' stroke-dasharray="6 4"' if dash else ""
            parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="{width}"{dashes}/>')
        elif kind == "circle":
            _, x, y, r, fill, stroke, stroke_width = shape
            parts.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r:.1f}" fill="{fill}" fill-opacity="0.75" '
                f'stroke="{stroke}" stroke-width="{stroke_width}"/>'
            )
        else:
            _, x, y, text, anchor, size, rotate = shape
            turn = f' transform="rotate(-90 {x:.1f} {y:.1f})"' if rotate else ""
            parts.append(
                f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}"{turn}>{escape(text)}</text>'
            )
    parts.append("</svg>")
    return "\n".join(parts)


def to_png(figure: Figure, scale: int = 2) -> bytes:
    from PIL import Image, ImageColor, ImageDraw, ImageFont

    image = Image.new("RGB", (WIDTH * scale, HEIGHT * scale), "#ffffff")
    draw = ImageDraw.Draw(image, "RGBA")
    anchors = {"start": "ls", "middle": "ms", "end": "rs"}
    for shape in figure.shapes:
        kind = shape[0]
        if kind == "line":
            _, points, colour, width, dash = shape
            scaled = [(x * scale, y * scale) for x, y in points]
            if dash:
                for start, end in itertools.pairwise(scaled):
                    _dashed(draw, start, end, colour, max(1, round(width * scale)), 6 * scale, 4 * scale)
            else:
                draw.line(scaled, fill=colour, width=max(1, round(width * scale)))
        elif kind == "circle":
            _, x, y, r, fill, stroke, stroke_width = shape
            box = [(x - r) * scale, (y - r) * scale, (x + r) * scale, (y + r) * scale]
            rgba = (*ImageColor.getrgb(fill)[:3], 191)
            outline = None if stroke == "none" else stroke
            draw.ellipse(box, fill=rgba, outline=outline, width=max(1, round(stroke_width * scale)))
        else:
            _, x, y, text, anchor, size, rotate = shape
            font = ImageFont.load_default(size=size * scale)
            if rotate:
                left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
                label = Image.new("RGBA", (right - left + 4, bottom - top + 4), (255, 255, 255, 0))
                ImageDraw.Draw(label).text((2 - left, 2 - top), text, fill="#000000", font=font)
                label = label.rotate(90, expand=True)
                image.paste(label, (round(x * scale - label.width / 2), round(y * scale - label.height / 2)), label)
            else:
                draw.text((x * scale, y * scale), text, fill="#000000", font=font, anchor=anchors[anchor])
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _dashed(draw, start, end, colour, width, on, off):
    (x0, y0), (x1, y1) = start, end
    length = ((x1 - x0) ** 2 + (y1 - y0) ** 2) ** 0.5
    if length == 0:
        return
    position = 0.0
    while position < length:
        stop = min(position + on, length)
        draw.line(
            [(x0 + (x1 - x0) * position / length, y0 + (y1 - y0) * position / length),
             (x0 + (x1 - x0) * stop / length, y0 + (y1 - y0) * stop / length)],
            fill=colour, width=width,
        )  # fmt: skip
        position += on + off


def chart_file(run: Run, filename: str) -> tuple[bytes, str] | None:
    """`(bytes, content type)` of `<chart>.<svg|png>` (see CHARTS, FORMATS), None for any other name."""
    name, _, extension = filename.rpartition(".")
    if name not in CHARTS or extension not in FORMATS:
        return None
    figure = _figure(run, name)
    body = to_svg(figure).encode() if extension == "svg" else to_png(figure)
    return body, FORMATS[extension]


def inline_svg(run: Run, name: str) -> str:
    return to_svg(_figure(run, name))
