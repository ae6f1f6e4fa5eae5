// scripts/bench's chart: panels of horizontal bars drawn as plain HTML, turned into a PNG by headless
// Chromium (Debian's package, as tests/e2e/statuspage.test.mjs uses it). No chart library: each bar
// is a div whose width is its value's share of the panel's largest value.
import { execFile } from "node:child_process";
import { mkdirSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { promisify } from "node:util";

const execFileP = promisify(execFile);

const WIDTH = 1200;
const COLUMNS = 2;
// Fixed pixel sizes, so the page height (and the screenshot's) is known before rendering.
const HEADER = 96;
const PANEL_CHROME = 70; // a panel's title, subtitle and padding
const BAR = 30;
const GAP = 16;
const FOOTER = 40;
const LABEL = 200; // the bar labels' column
const VALUE = 110; // room right of the longest bar for its value
const COLORS = { door: "#f38020", peer: "#5b7083", base: "#3c9a5f" };

const esc = (s) => String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

/**
 * `panels`: [{ title, subtitle, bars: [{ label, value, text, kind: "door" | "peer" | "base" }] }],
 * drawn two per row. Bars of one panel share its scale.
 */
function html({ title, subtitle, footer, panels }, rowHeights) {
  const panel = ({ title: t, subtitle: sub, bars }) => {
    const max = Math.max(...bars.map((b) => b.value)) || 1;
    // A bar's length: its share of the track, less the room its value needs.
    const share = (v) => `calc((100% - ${VALUE}px) * ${Math.max(0, v / max).toFixed(4)})`;
    const rows = bars.map((b) => `
      <div class="row"><div class="label">${esc(b.label)}</div>
        <div class="track"><div class="bar" style="width:${share(b.value)};background:${COLORS[b.kind]}"></div>
          <span class="value">${esc(b.text)}</span></div></div>`).join("");
    return `<div class="panel"><div class="title">${esc(t)}</div><div class="sub">${esc(sub ?? "")}</div>
      <div class="bars">${rows}</div></div>`;
  };
  return `<!DOCTYPE html><html><head><meta charset="utf-8"><style>
  * { box-sizing: border-box; }
  body { margin: 0; width: ${WIDTH}px; font: 13px/1.3 "DejaVu Sans", sans-serif; color: #1d2733; background: #fff; }
  header { height: ${HEADER}px; padding: 18px 24px 0; }
  h1 { margin: 0 0 6px; font-size: 20px; }
  header p { margin: 0; color: #56606b; }
  .grid { display: grid; grid-template-columns: repeat(${COLUMNS}, 1fr); grid-template-rows: ${rowHeights.map((h) => `${h}px`).join(" ")};
    gap: ${GAP}px; padding: 0 24px; }
  .panel { border: 1px solid #d9dee3; border-radius: 6px; padding: 10px 14px; }
  .title { font-weight: bold; font-size: 14px; }
  .sub { color: #56606b; height: 18px; margin-bottom: 8px; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
  .row { display: flex; align-items: center; height: ${BAR}px; }
  .label { width: ${LABEL}px; flex: none; padding-right: 8px; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
  .track { flex: 1; display: flex; align-items: center; height: 20px; }
  .bar { height: 100%; border-radius: 3px; min-width: 2px; flex: none; }
  .value { padding-left: 6px; font-weight: bold; white-space: nowrap; }
  footer { height: ${FOOTER}px; padding: 12px 24px 0; color: #56606b; font-size: 12px; }
  </style></head><body>
  <header><h1>${esc(title)}</h1><p>${esc(subtitle)}</p></header>
  <div class="grid">${panels.map(panel).join("")}</div>
  <footer>${esc(footer)}</footer>
  </body></html>`;
}

/**
 * Writes the chart to `png` (a directory is made for it), with Chromium's profile and the HTML page
 * under `workDir`. Returns the PNG's path.
 */
export async function writeChart(chart, png, workDir) {
  // Each row of panels is as tall as its panel with the most bars.
  const rowHeights = [];
  for (let i = 0; i < chart.panels.length; i += COLUMNS) {
    rowHeights.push(PANEL_CHROME + BAR * Math.max(...chart.panels.slice(i, i + COLUMNS).map((p) => p.bars.length)));
  }
  const height = HEADER + rowHeights.reduce((a, h) => a + h, 0) + (rowHeights.length - 1) * GAP + FOOTER;
  mkdirSync(workDir, { recursive: true });
  const page = path.join(workDir, "bench.html");
  writeFileSync(page, html(chart, rowHeights));
  mkdirSync(path.dirname(png), { recursive: true });
  await execFileP("chromium", [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
    "--force-device-scale-factor=1", `--user-data-dir=${path.join(workDir, "chromium")}`,
    `--window-size=${WIDTH},${height}`, `--screenshot=${png}`, pathToFileURL(page).href,
  ], { maxBuffer: 16 << 20, timeout: 60_000 });
  if (statSync(png).size < 10_000) throw new Error(`chart: ${png} is too small to be a rendering`);
  return png;
}
