/**
 * Hand-written SVG plots of a sweep report (no dependencies):
 *  - asrVsAccSvg: one scatter panel per attack, ACC (x) against ASR (y), one hollow marker per
 *    defense (its own colour and shape) with ±std error bars, and the undefended model as a black
 *    diamond; bottom right is ideal. Every marker stays visible: one that would overlap another
 *    (an FT that leaves the undefended model unchanged sits on it) is moved to the nearest free
 *    spot on rings around its point, in a fixed order, and a thin leader line joins it to its
 *    true position (placeMarkers).
 *  - derByDefenseSvg: mean DER per defense as grouped bars (one group per attack) with ±std
 *    whiskers and the 50 (= no effect) reference line.
 * When the sweep varies the clean budget or the model, panels/groups are per
 * (attack, budget, model) so that every panel still has one marker per defense.
 * renderSweepReport writes the whole report (Markdown, CSV, JSON and both plots).
 */
import type { SweepCellRecord } from './records';
import type { SeedRole } from '../../schemas/seedRoles';
import { buildSweepReport, naturalCompare, SWEEP_REPORT_FILES, type Stat, type SweepReport, type SweepRow } from './sweepReport';

/** Okabe-Ito (colour-blind safe) first, then Tol's muted; black is reserved for the undefended model. */
export const DEFENSE_COLORS = [
  '#0072B2',
  '#D55E00',
  '#009E73',
  '#CC79A7',
  '#E69F00',
  '#56B4E9',
  '#882255',
  '#44AA99',
  '#999933',
  '#AA4499',
  '#332288',
  '#117733',
];
const UNDEFENDED_COLOR = '#111111';
const FONT = 'Helvetica, Arial, sans-serif';
const GRID = '#e3e3e3';
const AXIS = '#444444';
const MUTED = '#666666';

export interface PlotOptions {
  /** chart title (default: a generic one) */
  title?: string;
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#39;');
/** Coordinates with at most 2 decimals, no trailing zeros. */
const n = (v: number) => String(Math.round(v * 100) / 100);
const clamp = (v: number, lo = 0, hi = 100) => Math.min(hi, Math.max(lo, v));
const statText = (s: Stat | null) => (s ? `${s.mean.toFixed(1)} ± ${s.std === null ? '–' : s.std.toFixed(1)}` : '–');
/** Rough text width for layout (Helvetica averages ~0.58 em per character). */
const textWidth = (s: string, size: number) => Math.ceil(s.length * size * 0.58);

function text(x: number, y: number, s: string, attrs: Record<string, string | number> = {}): string {
  const a = Object.entries({ 'font-size': 12, fill: AXIS, ...attrs })
    .map(([k, v]) => ` ${k}="${typeof v === 'number' ? n(v) : esc(v)}"`)
    .join('');
  return `<text x="${n(x)}" y="${n(y)}"${a}>${esc(s)}</text>`;
}

function line(x1: number, y1: number, x2: number, y2: number, stroke: string, extra = ''): string {
  return `<line x1="${n(x1)}" y1="${n(y1)}" x2="${n(x2)}" y2="${n(y2)}" stroke="${stroke}"${extra ? ` ${extra}` : ''}/>`;
}

function svgDocument(width: number, height: number, title: string, body: string[]): string {
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<svg xmlns="http://www.w3.org/2000/svg" width="${n(width)}" height="${n(height)}" viewBox="0 0 ${n(width)} ${n(height)}" font-family="${FONT}">`,
    `<title>${esc(title)}</title>`,
    `<rect class="background" x="0" y="0" width="${n(width)}" height="${n(height)}" fill="#ffffff"/>`,
    text(16, 28, title, { 'font-size': 17, 'font-weight': 'bold', fill: '#222222' }),
    ...body,
    '</svg>',
    '',
  ].join('\n');
}

/** Distinct defenses in a fixed order, each with its colour (shared by both plots). */
export function defenseColors(rows: SweepRow[]): Map<string, string> {
  const names = [...new Set(rows.map((r) => r.defense))].sort(naturalCompare);
  return new Map(names.map((d, i) => [d, DEFENSE_COLORS[i % DEFENSE_COLORS.length]]));
}

/** Hollow marker shapes, one per defense beside its colour (the filled diamond is the undefended model's). */
export const MARKER_SHAPES = ['circle', 'square', 'triangle', 'triangleDown', 'hexagon', 'star', 'plus', 'pentagon'] as const;
export type MarkerShape = (typeof MARKER_SHAPES)[number];
/** Marker radius in px (the shape's circumscribed circle). */
export const MARKER_RADIUS = 6;
const UNDEFENDED_RADIUS = 7;

/** Distinct defenses in the same order as their colours, each with its shape. */
export function defenseShapes(rows: SweepRow[]): Map<string, MarkerShape> {
  return new Map([...defenseColors(rows).keys()].map((d, i) => [d, MARKER_SHAPES[i % MARKER_SHAPES.length]]));
}

function polygon(cx: number, cy: number, r: number, corners: number, startDeg: number, inner?: number): string {
  const pts: string[] = [];
  const k = inner === undefined ? corners : corners * 2;
  for (let i = 0; i < k; i++) {
    const rr = inner !== undefined && i % 2 === 1 ? r * inner : r;
    const a = ((startDeg + (360 / k) * i) * Math.PI) / 180;
    pts.push(`${n(cx + rr * Math.cos(a))} ${n(cy + rr * Math.sin(a))}`);
  }
  return `M${pts.join('L')}Z`;
}

/** The SVG path of a marker shape centred on (cx, cy) within radius r. */
export function shapePath(shape: MarkerShape | 'diamond', cx: number, cy: number, r: number): string {
  switch (shape) {
    case 'circle':
      return `M${n(cx - r)} ${n(cy)}A${n(r)} ${n(r)} 0 1 0 ${n(cx + r)} ${n(cy)}A${n(r)} ${n(r)} 0 1 0 ${n(cx - r)} ${n(cy)}Z`;
    case 'square':
      return polygon(cx, cy, r, 4, 45);
    case 'diamond':
      return polygon(cx, cy, r, 4, -90);
    case 'triangle':
      return polygon(cx, cy, r, 3, -90);
    case 'triangleDown':
      return polygon(cx, cy, r, 3, 90);
    case 'hexagon':
      return polygon(cx, cy, r, 6, 0);
    case 'pentagon':
      return polygon(cx, cy, r, 5, -90);
    case 'star':
      return polygon(cx, cy, r, 5, -90, 0.45);
    case 'plus': {
      const a = r * 0.35;
      const p = [
        [-a, -r], [a, -r], [a, -a], [r, -a], [r, a], [a, a], [a, r], [-a, r], [-a, a], [-r, a], [-r, -a], [-a, -a],
      ];
      return `M${p.map(([x, y]) => `${n(cx + x)} ${n(cy + y)}`).join('L')}Z`;
    }
  }
}

export interface MarkerPoint {
  /** the point's true position (px) */
  x: number;
  y: number;
  r: number;
}

/**
 * Where to draw each marker so that none overlaps another (centres at least the sum of their
 * radii + 1 px apart), in the given order: a marker stays on its point when that is free,
 * else takes the first free spot on rings around it (ring k at k x (2 r_max + 2) px, 6k spots
 * each, starting up and to the right, clockwise) inside `bounds`. Deterministic: the same points
 * in the same order give the same places. Markers moved get a leader line to their point.
 */
export function placeMarkers(points: MarkerPoint[], bounds: { x0: number; y0: number; x1: number; y1: number }): Array<{ x: number; y: number; moved: boolean }> {
  const placed: Array<{ x: number; y: number; r: number }> = [];
  const rMax = Math.max(0, ...points.map((p) => p.r));
  const step = 2 * rMax + 2;
  const free = (x: number, y: number, r: number) => placed.every((q) => Math.hypot(q.x - x, q.y - y) >= q.r + r + 1);
  const inside = (x: number, y: number, r: number) => x - r >= bounds.x0 && x + r <= bounds.x1 && y - r >= bounds.y0 && y + r <= bounds.y1;
  return points.map((p) => {
    let spot = { x: p.x, y: p.y, moved: false };
    if (!free(p.x, p.y, p.r)) {
      search: for (let k = 1; k <= 12; k++) {
        for (let i = 0; i < 6 * k; i++) {
          const a = -Math.PI / 4 + (2 * Math.PI * i) / (6 * k);
          const x = p.x + k * step * Math.cos(a);
          const y = p.y + k * step * Math.sin(a);
          if (inside(x, y, p.r) && free(x, y, p.r)) {
            spot = { x, y, moved: true };
            break search;
          }
        }
      }
    }
    placed.push({ x: spot.x, y: spot.y, r: p.r });
    return spot;
  });
}

export interface Panel {
  /** attack, plus clean budget and model when the sweep varies them */
  label: string;
  attack: string;
  cleanBudget: string;
  model: string;
  rows: SweepRow[];
}

/** One panel per attack (per attack, budget, model when those vary), in the rows' order. */
export function panelsOf(rows: SweepRow[]): Panel[] {
  const budgets = new Set(rows.map((r) => r.cleanBudget));
  const models = new Set(rows.map((r) => r.model));
  const panels = new Map<string, Panel>();
  const sorted = [...rows].sort(
    (a, b) => naturalCompare(a.attack, b.attack) || naturalCompare(a.cleanBudget, b.cleanBudget) || naturalCompare(a.model, b.model) || naturalCompare(a.defense, b.defense),
  );
  for (const r of sorted) {
    const key = JSON.stringify([r.attack, r.cleanBudget, r.model]);
    let p = panels.get(key);
    if (!p) {
      const parts = [r.attack];
      if (budgets.size > 1) parts.push(`budget ${r.cleanBudget}`);
      if (models.size > 1) parts.push(r.model);
      panels.set(key, (p = { label: parts.join(' · '), attack: r.attack, cleanBudget: r.cleanBudget, model: r.model, rows: [] }));
    }
    p.rows.push(r);
  }
  return [...panels.values()];
}

/** Mean ± std over seeds of the undefended model in a panel (per-seed values averaged across defenses first). */
function undefended(rows: SweepRow[]): { acc: Stat | null; asr: Stat | null } {
  const perSeed = new Map<number, { acc: number[]; asr: number[] }>();
  for (const r of rows)
    for (const c of r.cells) {
      let s = perSeed.get(c.seed);
      if (!s) perSeed.set(c.seed, (s = { acc: [], asr: [] }));
      if (c.standardAcc !== undefined) s.acc.push(c.standardAcc);
      if (c.standardAsr !== undefined) s.asr.push(c.standardAsr);
    }
  const avg = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : undefined);
  const stat = (xs: Array<number | undefined>): Stat | null => {
    const v = xs.filter((x): x is number => x !== undefined);
    if (!v.length) return null;
    const mean = v.reduce((a, b) => a + b, 0) / v.length;
    if (v.length === 1) return { mean, std: null, n: 1 };
    return { mean, std: Math.sqrt(v.reduce((a, b) => a + (b - mean) ** 2, 0) / (v.length - 1)), n: v.length };
  };
  const seeds = [...perSeed.values()];
  return { acc: stat(seeds.map((s) => avg(s.acc))), asr: stat(seeds.map((s) => avg(s.asr))) };
}

interface LegendEntry {
  label: string;
  color: string;
  /** 'bar': a filled square (DER plot); 'diamond': the undefended model (filled); others: hollow markers */
  shape: MarkerShape | 'diamond' | 'bar';
}

function legend(x: number, y: number, entries: LegendEntry[], heading: string): string[] {
  const out = [`<g class="legend" transform="translate(${n(x)},${n(y)})">`, text(0, 0, heading, { 'font-size': 12, 'font-weight': 'bold' })];
  entries.forEach((e, i) => {
    const cy = 20 + i * 20;
    if (e.shape === 'bar') out.push(`<rect class="legend-swatch" x="1" y="${cy - 10}" width="12" height="12" fill="${e.color}"/>`);
    else if (e.shape === 'diamond') out.push(`<path class="legend-swatch" d="${diamond(7, cy - 4, 6.5)}" fill="${e.color}"/>`);
    else out.push(`<path class="legend-swatch" d="${shapePath(e.shape, 7, cy - 4, MARKER_RADIUS)}" fill="none" stroke="${e.color}" stroke-width="2"/>`);
    out.push(text(20, cy, e.label, { 'font-size': 12 }));
  });
  out.push('</g>');
  return out;
}

const legendWidth = (labels: string[], heading: string) => Math.max(textWidth(heading, 12), ...labels.map((l) => 22 + textWidth(l, 12))) + 16;

function diamond(cx: number, cy: number, r: number): string {
  return `M${n(cx)} ${n(cy - r)}L${n(cx + r)} ${n(cy)}L${n(cx)} ${n(cy + r)}L${n(cx - r)} ${n(cy)}Z`;
}

/** Horizontal and vertical ±std bars with caps, in plot coordinates. */
function errorBars(px: (v: number) => number, py: (v: number) => number, x: Stat, y: Stat, color: string): string[] {
  const out: string[] = [];
  const cap = 3;
  const w = `stroke-width="1.3"`;
  if (x.std !== null && x.std > 0) {
    const x0 = px(clamp(x.mean - x.std));
    const x1 = px(clamp(x.mean + x.std));
    const yy = py(y.mean);
    out.push(line(x0, yy, x1, yy, color, w), line(x0, yy - cap, x0, yy + cap, color, w), line(x1, yy - cap, x1, yy + cap, color, w));
  }
  if (y.std !== null && y.std > 0) {
    const y0 = py(clamp(y.mean - y.std));
    const y1 = py(clamp(y.mean + y.std));
    const xx = px(x.mean);
    out.push(line(xx, y0, xx, y1, color, w), line(xx - cap, y0, xx + cap, y0, color, w), line(xx - cap, y1, xx + cap, y1, color, w));
  }
  return out;
}

/**
 * ASR (y) against ACC (x) of the purified models, one panel per attack, one marker per defense
 * (±std bars both ways) plus the undefended model (black diamond). Both axes 0-100 %.
 */
export function asrVsAccSvg(rows: SweepRow[], opts: PlotOptions = {}): string {
  const title = opts.title ?? 'Attack success rate vs clean accuracy';
  const colors = defenseColors(rows);
  const shapes = defenseShapes(rows);
  const panels = panelsOf(rows);
  const P = 260; // plot area side
  const M = { left: 58, right: 18, top: 36, bottom: 48 };
  const panelW = M.left + P + M.right;
  const panelH = M.top + P + M.bottom;
  const cols = Math.max(1, Math.min(3, panels.length));
  const gridRows = Math.max(1, Math.ceil(panels.length / cols));
  const entries: LegendEntry[] = [
    ...[...colors].map(([label, color]) => ({ label, color, shape: shapes.get(label) ?? MARKER_SHAPES[0] })),
    { label: 'undefended (before purification)', color: UNDEFENDED_COLOR, shape: 'diamond' },
  ];
  const legendW = legendWidth(
    entries.map((e) => e.label),
    'Defense',
  );
  const top = 44;
  const footer = 'Markers: mean over seeds; bars: ±1 sample std; a thin line joins a marker moved off a shared point to its true position. Better = bottom right (high ACC, low ASR).';
  const width = Math.max(16 + cols * panelW + 12 + legendW, textWidth(title, 17) + 32, textWidth(footer, 11) + 32);
  const height = Math.max(top + gridRows * panelH + 26, top + 40 + entries.length * 20 + 20);
  const body: string[] = [];
  if (panels.length === 0) body.push(text(16, top + 40, 'No completed cells to plot.', { 'font-size': 14, fill: MUTED }));

  panels.forEach((panel, i) => {
    const ox = 16 + (i % cols) * panelW;
    const oy = top + Math.floor(i / cols) * panelH;
    const px = (v: number) => M.left + (clamp(v) / 100) * P;
    const py = (v: number) => M.top + P - (clamp(v) / 100) * P;
    body.push(`<g class="panel" data-attack="${esc(panel.attack)}" transform="translate(${n(ox)},${n(oy)})">`);
    body.push(text(M.left + P / 2, 22, panel.label, { 'font-size': 14, 'font-weight': 'bold', 'text-anchor': 'middle', fill: '#222222' }));
    body.push(`<rect class="plot-area" x="${M.left}" y="${M.top}" width="${P}" height="${P}" fill="#fbfbfb" stroke="#bbbbbb"/>`);
    for (let t = 0; t <= 100; t += 20) {
      if (t > 0 && t < 100) body.push(line(px(t), M.top, px(t), M.top + P, GRID), line(M.left, py(t), M.left + P, py(t), GRID));
      body.push(line(px(t), M.top + P, px(t), M.top + P + 5, AXIS), line(M.left - 5, py(t), M.left, py(t), AXIS));
      body.push(text(px(t), M.top + P + 18, String(t), { 'font-size': 11, 'text-anchor': 'middle', class: 'tick-label' }));
      body.push(text(M.left - 8, py(t) + 4, String(t), { 'font-size': 11, 'text-anchor': 'end', class: 'tick-label' }));
    }
    body.push(text(M.left + P / 2, M.top + P + 38, 'ACC (%) — clean accuracy', { 'font-size': 12, 'text-anchor': 'middle', class: 'axis-label' }));
    const yMid = M.top + P / 2;
    body.push(
      text(16, yMid, 'ASR (%) — attack success', { 'font-size': 12, 'text-anchor': 'middle', class: 'axis-label', transform: `rotate(-90 16 ${n(yMid)})` }),
    );

    // the undefended model first: it keeps its true place, and defenses that sit on it move aside
    const u = undefended(panel.rows);
    const marks: Array<{ acc: Stat; asr: Stat; color: string; shape: MarkerShape | 'diamond'; r: number; cls: string; defense?: string; title: string }> = [];
    if (u.acc && u.asr) {
      marks.push({ acc: u.acc, asr: u.asr, color: UNDEFENDED_COLOR, shape: 'diamond', r: UNDEFENDED_RADIUS, cls: 'undefended', title: `undefended: ACC ${statText(u.acc)}, ASR ${statText(u.asr)} (n=${Math.min(u.acc.n, u.asr.n)})` });
    }
    for (const r of panel.rows) {
      if (!r.acc || !r.asr) continue;
      marks.push({
        acc: r.acc,
        asr: r.asr,
        color: colors.get(r.defense) ?? DEFENSE_COLORS[0],
        shape: shapes.get(r.defense) ?? MARKER_SHAPES[0],
        r: MARKER_RADIUS,
        cls: 'marker',
        defense: r.defense,
        title: `${r.defense}: ACC ${statText(r.acc)}, ASR ${statText(r.asr)}, RA ${statText(r.ra)} (n=${r.n})`,
      });
    }
    const spots = placeMarkers(
      marks.map((m) => ({ x: px(m.acc.mean), y: py(m.asr.mean), r: m.r })),
      { x0: M.left, y0: M.top, x1: M.left + P, y1: M.top + P },
    );
    // bars at the true positions, under every marker; then leader lines; then the markers
    for (const m of marks) body.push(...errorBars(px, py, m.acc, m.asr, m.color));
    marks.forEach((m, i) => {
      if (spots[i].moved) body.push(line(px(m.acc.mean), py(m.asr.mean), spots[i].x, spots[i].y, m.color, 'class="leader" stroke-width="0.8"'));
    });
    marks.forEach((m, i) => {
      const { x, y } = spots[i];
      const paint = m.shape === 'diamond' ? `fill="${m.color}" stroke="#ffffff" stroke-width="1"` : `fill="none" stroke="${m.color}" stroke-width="2"`;
      const tag = m.defense === undefined ? '' : ` data-defense="${esc(m.defense)}" data-shape="${m.shape}"`;
      body.push(
        `<path class="${m.cls}"${tag} data-cx="${n(x)}" data-cy="${n(y)}" data-r="${m.r}" data-moved="${spots[i].moved}" d="${shapePath(m.shape, x, y, m.r)}" ${paint}>` +
          `<title>${esc(m.title + (spots[i].moved ? ' (moved aside: another marker sits on this point; the thin line leads to it)' : ''))}</title></path>`,
      );
    });
    if (marks.length === 0) body.push(text(M.left + P / 2, M.top + P / 2, 'no ACC/ASR values', { 'font-size': 12, 'text-anchor': 'middle', fill: MUTED }));
    body.push('</g>');
  });
  body.push(...legend(16 + cols * panelW + 12, top + 22, entries, 'Defense'));
  body.push(
    text(16, height - 8, footer, { 'font-size': 11, fill: MUTED }),
  );
  return svgDocument(width, height, title, body);
}

/**
 * Mean DER per defense as bars grouped by attack, ±std whiskers, the value above each bar,
 * and a dashed reference line at 50 (= no effect). Y axis 0-100.
 */
export function derByDefenseSvg(rows: SweepRow[], opts: PlotOptions = {}): string {
  const title = opts.title ?? 'Defense effectiveness rating (DER) by defense';
  const colors = defenseColors(rows);
  const panels = panelsOf(rows).map((p) => ({ ...p, rows: p.rows.filter((r) => r.der !== null) })).filter((p) => p.rows.length > 0);
  const H = 280;
  const M = { left: 64, right: 100, top: 64, bottom: 64 }; // right: room for the reference line's label
  const barW = 30;
  const barGap = 4;
  const groupGap = 34;
  const groups = panels.map((p) => {
    const barsW = p.rows.length * barW + (p.rows.length - 1) * barGap;
    return { ...p, barsW, w: Math.max(barsW, textWidth(p.label, 12) + 4) };
  });
  const contentW = groups.reduce((s, g) => s + g.w, 0) + groupGap * (groups.length + 1);
  const plotW = Math.max(260, contentW);
  const entries: LegendEntry[] = [...colors].map(([label, color]) => ({ label, color, shape: 'bar' as const }));
  const legendW = legendWidth(
    entries.map((e) => e.label),
    'Defense',
  );
  const formula = 'DER = [max(0, ΔASR) − max(0, ΔACC) + 1] / 2 × 100: 50 = no effect, 100 = ASR removed at no ACC cost';
  const width = Math.max(M.left + plotW + M.right + legendW, M.left + textWidth(formula, 11) + 16, textWidth(title, 17) + 32);
  const height = Math.max(M.top + H + M.bottom + 10, M.top + 40 + entries.length * 20);
  const py = (v: number) => M.top + H - (clamp(v) / 100) * H;
  const body: string[] = [];
  body.push(`<rect class="plot-area" x="${M.left}" y="${M.top}" width="${n(plotW)}" height="${H}" fill="#fbfbfb" stroke="#bbbbbb"/>`);
  for (let t = 0; t <= 100; t += 10) {
    if (t > 0 && t < 100) body.push(line(M.left, py(t), M.left + plotW, py(t), GRID));
    body.push(line(M.left - 5, py(t), M.left, py(t), AXIS));
    body.push(text(M.left - 8, py(t) + 4, String(t), { 'font-size': 11, 'text-anchor': 'end', class: 'tick-label' }));
  }
  const yMid = M.top + H / 2;
  body.push(text(18, yMid, 'DER (mean over seeds)', { 'font-size': 12, 'text-anchor': 'middle', class: 'axis-label', transform: `rotate(-90 18 ${n(yMid)})` }));
  body.push(
    text(M.left, M.top - 18, formula, { 'font-size': 11, fill: MUTED }),
  );
  if (groups.length === 0) body.push(text(M.left + plotW / 2, yMid, 'No DER values to plot.', { 'font-size': 14, 'text-anchor': 'middle', fill: MUTED }));

  let x = M.left + groupGap + (plotW - contentW) / 2; // centred when the plot is wider than its bars
  for (const g of groups) {
    const start = x + (g.w - g.barsW) / 2;
    body.push(`<g class="group" data-attack="${esc(g.attack)}">`);
    g.rows.forEach((r, i) => {
      const der = r.der!;
      const color = colors.get(r.defense) ?? DEFENSE_COLORS[0];
      const bx = start + i * (barW + barGap);
      const top = py(der.mean);
      const h = Math.max(0, M.top + H - top);
      body.push(
        `<rect class="bar" data-defense="${esc(r.defense)}" x="${n(bx)}" y="${n(top)}" width="${barW}" height="${n(h)}" fill="${color}">` +
          `<title>${esc(`${g.label} / ${r.defense}: DER ${statText(der)} (n=${der.n})`)}</title></rect>`,
      );
      let labelY = top - 5;
      if (der.std !== null && der.std > 0) {
        const cx = bx + barW / 2;
        const y0 = py(der.mean - der.std);
        const y1 = py(der.mean + der.std);
        body.push(
          `<g class="whisker">${line(cx, y0, cx, y1, '#222222', 'stroke-width="1.3"')}${line(cx - 5, y0, cx + 5, y0, '#222222', 'stroke-width="1.3"')}${line(cx - 5, y1, cx + 5, y1, '#222222', 'stroke-width="1.3"')}</g>`,
        );
        labelY = Math.min(labelY, y1 - 5);
      }
      body.push(text(bx + barW / 2, Math.max(M.top - 5, labelY), der.mean.toFixed(1), { 'font-size': 10, 'text-anchor': 'middle', fill: '#222222', class: 'value-label' }));
    });
    body.push(text(x + g.w / 2, M.top + H + 20, g.label, { 'font-size': 12, 'text-anchor': 'middle', 'font-weight': 'bold', class: 'group-label' }));
    body.push('</g>');
    x += g.w + groupGap;
  }
  // reference line on top of the bars so it stays visible
  body.push(line(M.left, py(50), M.left + plotW, py(50), '#C00000', 'class="reference" stroke-width="1.5" stroke-dasharray="6 4"'));
  body.push(text(M.left + plotW + 6, py(50) + 4, '50 = no effect', { 'font-size': 11, fill: '#C00000' }));
  body.push(text(M.left + plotW / 2, M.top + H + 44, 'attack', { 'font-size': 12, 'text-anchor': 'middle', class: 'axis-label' }));
  body.push(...legend(M.left + plotW + M.right, M.top + 12, entries, 'Defense'));
  body.push(text(16, height - 8, 'Bars: mean over seeds; whiskers: ±1 sample std.', { 'font-size': 11, fill: MUTED }));
  return svgDocument(width, height, title, body);
}

/**
 * Builds the sweep report and writes report.md, report.csv, report.json, asr_vs_acc.svg and
 * der_by_defense.svg through writeFile (bare file names; the caller picks the folder or store).
 */
export async function renderSweepReport(
  records: SweepCellRecord[],
  sweep: string,
  writeFile: (name: string, content: string) => Promise<void>,
  /** the role the spec declared for the table's seeds, and the spec's cell ids (buildSweepReport) */
  opts: { seedRole?: SeedRole; cellIds?: string[] } = {},
): Promise<SweepReport & { files: string[] }> {
  const report = buildSweepReport(records, { sweep, seedRole: opts.seedRole, cellIds: opts.cellIds });
  const files: Array<[string, string]> = [
    [SWEEP_REPORT_FILES.markdown, report.markdown],
    [SWEEP_REPORT_FILES.csv, report.csv],
    [SWEEP_REPORT_FILES.json, JSON.stringify(report.json, null, 2) + '\n'],
    [SWEEP_REPORT_FILES.asrVsAcc, asrVsAccSvg(report.rows, { title: `${sweep}: ASR vs ACC (purified models)` })],
    [SWEEP_REPORT_FILES.derByDefense, derByDefenseSvg(report.rows, { title: `${sweep}: DER by defense` })],
  ];
  for (const [name, content] of files) await writeFile(name, content);
  return { ...report, files: files.map(([name]) => name) };
}
